#!/usr/bin/env bash
# Toxiproxy (a Go TCP proxy that injects network faults) for the reliability suite.
#
# Built once from its Go module with `go install` and cached under
# .infra/toxiproxy/bin/ (git-ignored). The suite (tests/reliability) starts its
# own toxiproxy-server on a free loopback port and stops it; nothing here runs
# in the background by itself.
#
# Usage: infra/toxiproxy.sh COMMAND
#   install   build toxiproxy-server (module path cmd/server in v2.5) into
#             .infra/toxiproxy/bin-VERSION/server (skipped when there)
#   path      print the binary's path (installs first when missing)
#   run PORT  run toxiproxy-server in the foreground on 127.0.0.1:PORT
#
# Environment:
#   TOXIPROXY_VERSION  module version to install (default v2.5.0)
#   TOXIPROXY_BIN      use this binary instead of building one
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${TOXIPROXY_VERSION:-v2.5.0}"
CACHE="$REPO/.infra/toxiproxy"
BIN_DIR="$CACHE/bin-$VERSION"
BIN="${TOXIPROXY_BIN:-$BIN_DIR/server}"

say() { printf 'toxiproxy.sh: %s\n' "$*"; }
die() { printf 'toxiproxy.sh: ERROR: %s\n' "$*" >&2; exit 1; }

cmd_install() {
    if [[ -x "$BIN" ]]; then
        say "toxiproxy-server $VERSION already built ($BIN)"
        return 0
    fi
    [[ -z "${TOXIPROXY_BIN:-}" ]] || die "TOXIPROXY_BIN=$TOXIPROXY_BIN is not an executable"
    command -v go >/dev/null || die "go not found (Go 1.21+ is needed to build toxiproxy-server)"
    mkdir -p "$BIN_DIR"
    say "building toxiproxy-server $VERSION with go install (first time: about a minute) ..."
    if ! GOBIN="$BIN_DIR" GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
            go install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION" \
            >"$CACHE/install.log" 2>&1; then
        tail -n 30 "$CACHE/install.log" >&2
        die "go install failed (is the Go module proxy reachable? full output: $CACHE/install.log)"
    fi
    say "built $BIN"
}

case "${1:-}" in
    install) cmd_install ;;
    path) cmd_install >&2; echo "$BIN" ;;
    run)
        [[ "${2:-}" =~ ^[0-9]+$ ]] || die "usage: infra/toxiproxy.sh run PORT"
        cmd_install >&2
        exec "$BIN" -host 127.0.0.1 -port "$2"
        ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
