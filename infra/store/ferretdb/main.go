// Command ferretdb runs FerretDB v2 (embedded package) for the local
// MongoDB-wire store of ActionItems: a MongoDB wire protocol listener on top
// of PostgreSQL with the DocumentDB extension. See infra/store.sh.
//
// Settings come from flags, or else from the environment:
//
//	--listen-addr     FERRETDB_LISTEN_ADDR     (default 127.0.0.1:27017)
//	--postgresql-url  FERRETDB_POSTGRESQL_URL  (default postgres://postgres@127.0.0.1:54329/postgres)
//	--state-dir       FERRETDB_STATE_DIR       (default .)
//	--log-level       FERRETDB_LOG_LEVEL       (debug, info, warn, error; default info)
//
// It runs until SIGTERM or SIGINT, then closes listeners and connections.
// Authentication is off and telemetry is disabled.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/v2/ferretdb"
)

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func main() {
	listenAddr := flag.String("listen-addr", env("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"), "MongoDB wire protocol TCP listen address")
	pgURL := flag.String("postgresql-url", env("FERRETDB_POSTGRESQL_URL", "postgres://postgres@127.0.0.1:54329/postgres"), "PostgreSQL URL (DocumentDB extension installed)")
	stateDir := flag.String("state-dir", env("FERRETDB_STATE_DIR", "."), "state directory")
	logLevel := flag.String("log-level", env("FERRETDB_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad --log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}

	if err := os.MkdirAll(*stateDir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: cannot create state dir: %v\n", err)
		os.Exit(1)
	}

	telemetry := false

	f, err := ferretdb.New(&ferretdb.Config{
		PostgreSQLURL: *pgURL,
		ListenAddr:    *listenAddr,
		StateDir:      *stateDir,
		LogLevel:      level,
		LogOutput:     os.Stderr,
		Telemetry:     &telemetry,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	fmt.Fprintf(os.Stderr, "ferretdb: listening on %s (pid %d)\n", *listenAddr, os.Getpid())
	f.Run(ctx)
	fmt.Fprintln(os.Stderr, "ferretdb: stopped")
}
