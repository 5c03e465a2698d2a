#!/usr/bin/env bash
# Local MongoDB-wire store for ActionItems: FerretDB v2.5.0 (embedded Go
# package, infra/store/ferretdb) on a PostgreSQL 15 cluster of its own with
# the DocumentDB 0.106 extension. See shared/docs/infra-notes.md.
#
#   infra/store.sh build    build everything once (each step cached by a marker)
#   infra/store.sh start    build if needed, start PostgreSQL and FerretDB
#   infra/store.sh stop     stop FerretDB and PostgreSQL (no process left)
#   infra/store.sh status   exit 0 only if both are running
#
# Environment:
#   MONGODB_URI       if set, `start` uses that external store and starts nothing
#   STORE_PORT        FerretDB port on 127.0.0.1 (default 27017)
#   STORE_PG_PORT     PostgreSQL port on 127.0.0.1 (default 54329)
#   STORE_LOG_LEVEL   FerretDB log level: debug, info, warn, error (default warn;
#                     info logs every client connection)
#   STORE_VENDOR_DIR  pinned source archives (default $REPO/../shared/vendor);
#                     when absent they are downloaded from upstream (GitHub) or
#                     from STORE_MIRROR_URL/<archive name>, and checked against
#                     the same pinned checksums
#   STORE_JOBS        parallel make jobs (default: number of CPUs)
#
# Everything lives under $REPO/.infra (git-ignored): store/ (sources, builds,
# libbson, bin/ferretdb, pgdata, markers), logs/, run/. The extensions are
# installed into the system PostgreSQL 15 (needs root, or sudo).
set -euo pipefail
shopt -s inherit_errexit

# ---------------------------------------------------------------- settings --
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$REPO/.infra"
STORE="$INFRA/store"
SRC="$STORE/src"
DONE="$STORE/done"
LOGS="$INFRA/logs"
RUN="$INFRA/run"
VENDOR="${STORE_VENDOR_DIR:-$REPO/../shared/vendor}"

PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG="$PG_BIN/pg_config"
PGDATA="$STORE/pgdata"
PG_PORT="${STORE_PG_PORT:-54329}"
PG_LOG="$LOGS/postgres.log"
PG_OS_USER=postgres            # initdb refuses root: the cluster belongs to postgres when run as root

FERRET_SRC="$REPO/infra/store/ferretdb"
FERRET_BIN="$STORE/bin/ferretdb"
FERRET_PORT="${STORE_PORT:-27017}"
FERRET_ADDR="127.0.0.1:$FERRET_PORT"
FERRET_PID="$RUN/ferretdb.pid"
FERRET_LOG="$LOGS/ferretdb.log"
FERRET_STATE="$STORE/ferretdb-state"
FERRET_LOG_LEVEL="${STORE_LOG_LEVEL:-warn}"   # info logs every connection
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

JOBS="${STORE_JOBS:-$(nproc 2>/dev/null || echo 2)}"

APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libpcre2-dev libintelrdfpmath-dev
  postgresql-15-postgis-3 postgresql-15-rum libkrb5-dev build-essential pkg-config cmake
  curl ca-certificates)

# Pinned sources: key | archive | sha256 of the archive | tree hash of its
# content (see tree_hash; used when a download is not byte-identical) |
# upstream URL | directory names left out of the tree hash.
# The archives are `git archive` of the tags (mongo-c-driver without its
# tests folders), as in ../shared/vendor/SHA256SUMS.
SOURCES=(
  "documentdb|documentdb-0.106.0-ferretdb-2.5.0.tar.gz|3ba0408eee7c3bc67933da50034092ee77e2aa79b61234c1216b0a1ffac21df1|c3a5c95544c18b4a9ee01fd7bfeae347e173af3a09df1681bc7d046f4b06a364|https://github.com/FerretDB/documentdb/archive/refs/tags/v0.106.0-ferretdb-2.5.0.tar.gz|"
  "mongo-c-driver|mongo-c-driver-1.28.0.tar.gz|7a2b482f6ffe0be4bfacfe5bf6e647a18d6bc81cbbf3e7e29329c61a66b72e64|1a434585472cf2f8160bacdbc1cdd1579d1de21a10df67fd7129f64632af364f|https://github.com/mongodb/mongo-c-driver/archive/refs/tags/1.28.0.tar.gz|tests"
  "pg_cron|pg_cron-1.6.3.tar.gz|3580f4034021e62e459f9f7ab1f625774bfc534a9256844545da85d6f99c2f5b|a6b22de15c274bc02f367525aef8d218467968e827a2d1d79a35f4bac6071f17|https://github.com/citusdata/pg_cron/archive/refs/tags/v1.6.3.tar.gz|"
  "pgvector|pgvector-0.8.0.tar.gz|93df40ccdaaaa267d1275c1e6e773004a0e5ff8e14227934a4ec7e8205d0f608|f0af6d267dcdc82ff2b5a39f0be85c90ea549f6ab0c4d96d8a5c03bd2e525fac|https://github.com/pgvector/pgvector/archive/refs/tags/v0.8.0.tar.gz|"
)
DOCDB_DIR="$SRC/documentdb-0.106.0-ferretdb-2.5.0"
MONGOC_DIR="$SRC/mongo-c-driver-1.28.0"
PGCRON_DIR="$SRC/pg_cron-1.6.3"
PGVECTOR_DIR="$SRC/pgvector-0.8.0"
LIBBSON_PREFIX="$STORE/libbson"
PKGCONF_DIR="$STORE/pkgconfig"
# The version string FerretDB v2.5.0 expects (build/version/documentdb.go):
# "0.106.0 gitref: HEAD sha:beb9d25d98 buildId:0". A tree without .git says "unknown".
DOCDB_GIT_VERSION="HEAD sha:beb9d25d98 buildId:0"
DOCDB_PRELOAD_CONF="$STORE/documentdb-preload.conf"

# ----------------------------------------------------------------- helpers --
say() { printf '[store] %s\n' "$*"; }
die() { printf '[store] ERROR: %s\n' "$*" >&2; exit 1; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
rel() { printf '%s' "${1#"$REPO"/}"; }

is_root() { [[ $EUID -eq 0 ]]; }
as_root() {
  if is_root; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "needs root for: $* (run as root, or install sudo)"; fi
}
# Run PostgreSQL server commands as the cluster's owner.
as_pg() {
  if is_root; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}
pg_pkglibdir() { "$PG_CONFIG" --pkglibdir; }
pg_sharedir() { "$PG_CONFIG" --sharedir; }

# tree_hash DIR [EXCLUDED_DIR_NAME]: sha256 over the sorted list of
# "sha256  ./path" of the regular files plus "L path -> target" of symlinks.
# Independent of tar/gzip metadata, so a re-packed but identical tree matches.
tree_hash() {
  local dir=$1 excl=${2:-} prune=()
  [[ -n $excl ]] && prune=(-name "$excl" -prune -o)
  ( cd "$dir" && {
      find . "${prune[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
      find . "${prune[@]}" -type l -printf 'L %p -> %l\n' | LC_ALL=C sort
    } ) | sha256sum | cut -d' ' -f1
}

QUIET_CACHED=0
cached() { [[ $QUIET_CACHED == 1 ]] || say "$1: cached, skipped"; }

# run_step NAME "DESCRIPTION" "ESTIMATE" FUNCTION "HINT"
# Runs FUNCTION with its output in .infra/logs/store-build-NAME.log, prints
# progress and time; on failure prints the log's tail and a hint, and exits.
run_step() {
  local name=$1 desc=$2 est=$3 fn=$4 hint=$5
  local log="$LOGS/store-build-$name.log" t0 rc
  t0=$(now)
  say "$desc (about $est)..."
  set +e
  ( set -euo pipefail; "$fn" ) >"$log" 2>&1 9>&-
  rc=$?
  set -e
  if [[ $rc -ne 0 ]]; then
    printf '[store] FAILED: %s (exit %s) after %s s. Last 30 lines of %s:\n' \
      "$desc" "$rc" "$(since "$t0")" "$(rel "$log")" >&2
    tail -n 30 "$log" | sed 's/^/    | /' >&2
    printf '[store] what to do: %s\n' "$hint" >&2
    printf '[store] then rerun %s (finished steps are skipped).\n' "'infra/store.sh build'" >&2
    exit 1
  fi
  say "  done in $(since "$t0") s (log: $(rel "$log"))"
}

# ------------------------------------------------------------------- build --
missing_apt_packages() {
  local p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || printf '%s ' "$p"
  done
}

do_apt() {
  local missing
  missing=$(missing_apt_packages)
  echo "installing: $missing"
  export DEBIAN_FRONTEND=noninteractive
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  # shellcheck disable=SC2086
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
}

fetch_archive() { # key file sha tree url excl -> path of a verified archive on stdout
  local key=$1 file=$2 sha=$3 tree=$4 url=$5 excl=$6
  if [[ -f "$VENDOR/$file" ]]; then
    echo "$sha  $VENDOR/$file" | sha256sum -c --quiet >&2 \
      || { echo "$VENDOR/$file does not match the checksum pinned in infra/store.sh" >&2; return 1; }
    printf '%s\n' "$VENDOR/$file"
    return 0
  fi
  local dl="$STORE/downloads" src="$url"
  [[ -n ${STORE_MIRROR_URL:-} ]] && src="${STORE_MIRROR_URL%/}/$file"
  mkdir -p "$dl"
  if [[ ! -f "$dl/$file" ]]; then
    echo "downloading $src" >&2
    curl -fsSL --retry 3 --connect-timeout 20 -o "$dl/$file.part" "$src" >&2
    mv "$dl/$file.part" "$dl/$file"
  fi
  if echo "$sha  $dl/$file" | sha256sum -c --status; then
    echo "$file: sha256 matches" >&2
    printf '%s\n' "$dl/$file"
    return 0
  fi
  # Not byte-identical (GitHub's on-the-fly archives, or mongo-c-driver's
  # upstream archive that still has its tests folders): compare content.
  local tmp got
  tmp=$(mktemp -d "$STORE/.check-XXXXXX")
  tar -xzf "$dl/$file" -C "$tmp"
  got=$(tree_hash "$tmp/${file%.tar.gz}" "$excl")
  rm -rf "$tmp"
  if [[ $got != "$tree" ]]; then
    mv -f "$dl/$file" "$dl/$file.rejected"
    echo "$src: neither its sha256 nor its content hash matches the pinned ones (content $got, want $tree); kept as $dl/$file.rejected, the next run downloads again" >&2
    return 1
  fi
  echo "$file: archive bytes differ from the pinned archive, content identical (tree hash $tree)" >&2
  printf '%s\n' "$dl/$file"
}

do_sources() {
  mkdir -p "$SRC"
  if [[ -f "$VENDOR/SHA256SUMS" ]]; then
    echo "verifying $VENDOR with sha256sum -c SHA256SUMS"
    (cd "$VENDOR" && sha256sum -c SHA256SUMS)
  else
    echo "no $VENDOR/SHA256SUMS: downloading the pinned tags from upstream"
  fi
  local entry key file sha tree url excl dir archive
  for entry in "${SOURCES[@]}"; do
    IFS='|' read -r key file sha tree url excl <<<"$entry"
    dir="${file%.tar.gz}"
    [[ -f "$DONE/src-$dir" && -d "$SRC/$dir" ]] && continue
    archive=$(fetch_archive "$key" "$file" "$sha" "$tree" "$url" "$excl")
    rm -rf "${SRC:?}/$dir" "$SRC/.x-$dir"
    mkdir -p "$SRC/.x-$dir"
    tar -xzf "$archive" -C "$SRC/.x-$dir"
    [[ -d "$SRC/.x-$dir/$dir" ]] || { echo "$archive has no top folder $dir" >&2; return 1; }
    mv "$SRC/.x-$dir/$dir" "$SRC/$dir"
    rmdir "$SRC/.x-$dir"
    echo "extracted $dir"
    touch "$DONE/src-$dir"
  done
}

do_libbson() {
  rm -rf "$MONGOC_DIR/_build" "$LIBBSON_PREFIX"
  mkdir -p "$MONGOC_DIR/_build"
  cd "$MONGOC_DIR/_build"
  cmake -DENABLE_MONGOC=OFF -DENABLE_ICU=OFF -DENABLE_TESTS=OFF -DENABLE_EXAMPLES=OFF \
    -DCMAKE_C_FLAGS=-fPIC -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$LIBBSON_PREFIX" ..
  make -j"$JOBS" install
  ls "$LIBBSON_PREFIX"/lib*/pkgconfig/libbson-static-1.0.pc
}

libbson_pc_dir() {
  local pc
  for pc in "$LIBBSON_PREFIX"/lib*/pkgconfig/libbson-static-1.0.pc; do
    [[ -f $pc ]] && { dirname "$pc"; return 0; }
  done
  return 0
}

do_documentdb() {
  PKG_CONFIG_PATH="$(libbson_pc_dir):$PKGCONF_DIR"
  export PKG_CONFIG_PATH
  pkg-config --exists libbson-static-1.0 intelmathlib libpcre2-8
  # The tree has no .git, but it sits inside this project's git work tree:
  # keep git from finding the project's repo (its branch/sha would end up in
  # the version string, and the header would be rebuilt on every commit).
  export GIT_CEILING_DIRECTORIES="$SRC"
  # Write the version header FerretDB v2.5.0 expects; with GIT_INDEX_FILE
  # empty the Makefile's rule for it has no prerequisites, so it is kept.
  local hdr="$DOCDB_DIR/pg_documentdb/build/include/metadata/documentdb_extension_version.h" ver
  ver=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$DOCDB_DIR/pg_documentdb/documentdb.control")
  mkdir -p "$(dirname "$hdr")"
  printf '// Autogenerated header for versioning (infra/store.sh)\n#define EXTENSION_VERSION_STR "%s"\n#define GIT_VERSION "%s"\n' \
    "${ver/-/.}" "$DOCDB_GIT_VERSION" >"$hdr"
  cat "$hdr"
  local sub
  for sub in pg_documentdb_core pg_documentdb; do
    make -C "$DOCDB_DIR/$sub" PG_CONFIG="$PG_CONFIG" GIT_INDEX_FILE= -j"$JOBS"
    as_root env PKG_CONFIG_PATH="$PKG_CONFIG_PATH" GIT_CEILING_DIRECTORIES="$SRC" \
      make -C "$DOCDB_DIR/$sub" PG_CONFIG="$PG_CONFIG" GIT_INDEX_FILE= install
  done
  grep -q "$DOCDB_GIT_VERSION" "$DOCDB_DIR/pg_documentdb/pg_documentdb.so" \
    || { echo "pg_documentdb.so lacks the version string '$DOCDB_GIT_VERSION'" >&2; return 1; }
  # The documentdb.* settings of the source's packaging/10-preload.sh.
  sed -n -E '/^(shared_preload_libraries|cron\.|documentdb\.)/p' \
    "$DOCDB_DIR/packaging/10-preload.sh" >"$DOCDB_PRELOAD_CONF"
  grep -q '^shared_preload_libraries' "$DOCDB_PRELOAD_CONF"
  cat "$DOCDB_PRELOAD_CONF"
}

do_pgvector() {
  # OPTFLAGS= : no -march=native, so the build works on any x86-64 machine.
  make -C "$PGVECTOR_DIR" PG_CONFIG="$PG_CONFIG" OPTFLAGS= -j"$JOBS"
  as_root make -C "$PGVECTOR_DIR" PG_CONFIG="$PG_CONFIG" OPTFLAGS= install
}

do_pgcron() {
  make -C "$PGCRON_DIR" PG_CONFIG="$PG_CONFIG" -j"$JOBS"
  as_root make -C "$PGCRON_DIR" PG_CONFIG="$PG_CONFIG" install
}

check_go() {
  command -v go >/dev/null || die "Go is not installed (need Go >= 1.24, e.g. /usr/local/go/bin/go from go.dev/dl)"
  local v
  v=$(GOTOOLCHAIN=local go env GOVERSION)
  v=${v#go}
  local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
  if (( major < 1 || (major == 1 && minor < 24) )); then
    die "Go $v is too old to build FerretDB v2.5.0 (need >= 1.24)"
  fi
}

do_ferretdb() {
  cd "$FERRET_SRC"
  go version
  GOTOOLCHAIN=local go build -buildvcs=false -trimpath -o "$FERRET_BIN.new" .
  mv "$FERRET_BIN.new" "$FERRET_BIN"
}

ferretdb_fresh() {
  [[ -x $FERRET_BIN ]] || return 1
  local f
  for f in main.go go.mod go.sum; do
    [[ "$FERRET_SRC/$f" -nt "$FERRET_BIN" ]] && return 1
  done
  return 0
}

build() {
  local t0 missing lib share
  t0=$(now)
  mkdir -p "$STORE" "$SRC" "$DONE" "$LOGS" "$RUN" "$PKGCONF_DIR" "$STORE/bin"

  missing=$(missing_apt_packages)
  if [[ -n $missing ]]; then
    run_step apt "installing Debian packages: $missing" "25-60 s" do_apt \
      "check that apt can reach the Debian mirrors (apt-get update); install the packages by hand if needed"
  else
    cached "Debian packages"
  fi
  if dpkg -s postgresql-15-cron 2>/dev/null | grep -q '^Status: install ok installed'; then
    say "warning: Debian's postgresql-15-cron (1.4) is installed; pg_cron 1.6.3 built here replaces its files (DocumentDB needs >= 1.5)"
  fi
  [[ -x $PG_CONFIG ]] || die "$PG_CONFIG not found (is postgresql-15 installed?)"
  lib=$(pg_pkglibdir); share=$(pg_sharedir)

  local all_src=1 entry file
  for entry in "${SOURCES[@]}"; do
    IFS='|' read -r _ file _ <<<"$entry"
    [[ -f "$DONE/src-${file%.tar.gz}" && -d "$SRC/${file%.tar.gz}" ]] || all_src=0
  done
  if [[ $all_src == 0 ]]; then
    run_step sources "verifying and unpacking the pinned sources" "2 s" do_sources \
      "check $VENDOR (sha256sum -c SHA256SUMS there) or, without it, the network access to github.com"
  else
    cached "sources"
  fi

  if [[ -f "$DONE/libbson-1.28.0" && -n "$(libbson_pc_dir)" ]]; then
    cached "libbson 1.28"
  else
    run_step libbson "building libbson 1.28 into .infra/store/libbson" "15 s" do_libbson \
      "see the cmake/make errors above; rm -rf .infra/store/src/mongo-c-driver-1.28.0 and .infra/store/done/src-mongo-c-driver-1.28.0 to unpack it again"
    touch "$DONE/libbson-1.28.0"
  fi

  if ! cmp -s "$REPO/infra/store/intelmathlib.pc" "$PKGCONF_DIR/intelmathlib.pc"; then
    cp "$REPO/infra/store/intelmathlib.pc" "$PKGCONF_DIR/intelmathlib.pc"
    say "intelmathlib.pc installed into $(rel "$PKGCONF_DIR")"
  else
    cached "intelmathlib.pc"
  fi

  if [[ -f "$DONE/documentdb-0.106.0" && -f "$lib/pg_documentdb.so" && -f "$lib/pg_documentdb_core.so" \
        && -f "$share/extension/documentdb.control" && -s "$DOCDB_PRELOAD_CONF" ]]; then
    cached "DocumentDB 0.106"
  else
    run_step documentdb "building DocumentDB 0.106 (pg_documentdb_core + pg_documentdb)" "75 s on 2 cores" do_documentdb \
      "compiler errors: check libbson (.infra/store/libbson), libintelrdfpmath-dev and postgresql-server-dev-15; install errors: run as root"
    touch "$DONE/documentdb-0.106.0"
  fi

  if [[ -f "$DONE/pgvector-0.8.0" && -f "$lib/vector.so" && -f "$share/extension/vector.control" ]]; then
    cached "pgvector 0.8.0"
  else
    run_step pgvector "building pgvector 0.8.0" "10 s" do_pgvector \
      "check postgresql-server-dev-15 and build-essential"
    touch "$DONE/pgvector-0.8.0"
  fi

  if [[ -f "$DONE/pg_cron-1.6.3" && -f "$lib/pg_cron.so" ]] \
     && grep -q "^default_version = '1.6'" "$share/extension/pg_cron.control" 2>/dev/null; then
    cached "pg_cron 1.6.3"
  else
    run_step pg_cron "building pg_cron 1.6.3" "2 s" do_pgcron \
      "check postgresql-server-dev-15 and libpq-dev"
    touch "$DONE/pg_cron-1.6.3"
  fi

  if ferretdb_fresh; then
    cached "FerretDB binary"
  else
    check_go
    run_step ferretdb "building FerretDB v2.5.0 (infra/store/ferretdb -> .infra/store/bin/ferretdb)" \
      "2 min with an empty Go cache, 10 s with a warm one" do_ferretdb \
      "check access to the Go module proxy (go env GOPROXY) and that infra/store/ferretdb/go.sum is committed"
  fi
  [[ $QUIET_CACHED == 1 ]] || say "build complete in $(since "$t0") s"
}

# -------------------------------------------------------------- postgresql --
postmaster_pid() { head -n1 "$PGDATA/postmaster.pid" 2>/dev/null; }

pg_running() {
  [[ -f $PGDATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1 \
    && proc_alive "$(postmaster_pid)"
}

# pg_wait_gone: a killed postmaster not yet reaped (a zombie) still "owns"
# postmaster.pid; wait a little for its parent to reap it.
pg_wait_gone() {
  local pid i
  pid=$(postmaster_pid) || return 0
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  for ((i = 0; i < 100; i++)); do
    [[ -e /proc/$pid ]] && ! proc_alive "$pid" || return 0
    sleep 0.1
  done
}

pg_socket_dir() {
  local d="$RUN/pg"
  # unix socket paths are limited to 107 bytes
  if (( ${#d} + 20 > 107 )); then d="${TMPDIR:-/tmp}/actionitems-store-pg-$(id -u)-$PG_PORT"; fi
  printf '%s' "$d"
}

ensure_pg_dirs() {
  local sock
  sock=$(pg_socket_dir)
  mkdir -p "$sock" "$LOGS"
  touch "$PG_LOG"
  if is_root; then
    chown "$PG_OS_USER": "$sock" "$PG_LOG"
    runuser -u "$PG_OS_USER" -- test -x "$STORE" -a -w "$PG_LOG" \
      || die "the $PG_OS_USER user cannot reach $STORE (a parent folder is not searchable by others); chmod o+x the parents or move the repo"
  fi
}

pg_init() {
  [[ -f $PGDATA/PG_VERSION ]] && return 0
  if [[ -e $PGDATA ]]; then
    rmdir "$PGDATA" 2>/dev/null || die "$(rel "$PGDATA") exists but is not a PostgreSQL cluster; move it away"
  fi
  local t0 tmp="$PGDATA.init"
  t0=$(now)
  say "initialising the PostgreSQL cluster in $(rel "$PGDATA")..."
  rm -rf "$tmp"
  mkdir -p "$tmp"
  is_root && chown "$PG_OS_USER": "$tmp"
  chmod 700 "$tmp"
  if ! as_pg "$PG_BIN/initdb" -D "$tmp" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
       >"$LOGS/store-initdb.log" 2>&1; then
    tail -n 20 "$LOGS/store-initdb.log" >&2
    die "initdb failed (log: $(rel "$LOGS/store-initdb.log"))"
  fi
  printf "\n# Settings of the ActionItems local store (rewritten by infra/store.sh start)\ninclude = 'store.conf'\n" \
    >>"$tmp/postgresql.conf"
  mv "$tmp" "$PGDATA"
  say "  done in $(since "$t0") s"
}

pg_write_conf() {
  local conf="$PGDATA/store.conf"
  {
    echo "# Written by infra/store.sh on every start: edits are lost."
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $PG_PORT"
    echo "unix_socket_directories = '$(pg_socket_dir)'"
    echo "# DocumentDB runs pg_cron jobs every 2 s: keep them out of the log and"
    echo "# out of cron.job_run_details (which would grow by 90k rows a day)."
    echo "cron.log_run = off"
    echo "cron.log_statement = off"
    echo "# From DocumentDB's packaging/10-preload.sh:"
    cat "$DOCDB_PRELOAD_CONF"
  } >"$conf.new"
  mv "$conf.new" "$conf"
  is_root && chown "$PG_OS_USER": "$conf"
  return 0
}

pg_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_start() {
  ensure_pg_dirs
  pg_init
  if pg_running; then
    say "PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    pg_wait_gone
    pg_port_busy "$PG_PORT" && die "port $PG_PORT is taken by another process (set STORE_PG_PORT)"
    pg_write_conf
    local t0
    t0=$(now)
    say "starting PostgreSQL 15 on 127.0.0.1:$PG_PORT..."
    # 9>&- : the server must not inherit the lock of this script.
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 start >/dev/null 9>&-; then
      tail -n 20 "$PG_LOG" >&2
      die "PostgreSQL did not start (log: $(rel "$PG_LOG"))"
    fi
    say "  PostgreSQL up in $(since "$t0") s"
  fi
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 15 \
    || die "PostgreSQL (data $(rel "$PGDATA")) runs but does not accept connections on 127.0.0.1:$PG_PORT; see $(rel "$PG_LOG"), or infra/store.sh stop; infra/store.sh start"
  local have
  have=$(psql_cmd -c "SELECT extversion FROM pg_extension WHERE extname = 'documentdb'")
  if [[ -z $have ]]; then
    local t0
    t0=$(now)
    say "creating extension documentdb (once)..."
    psql_cmd -c "CREATE EXTENSION IF NOT EXISTS documentdb CASCADE" >/dev/null \
      || die "CREATE EXTENSION documentdb failed (see $(rel "$PG_LOG"))"
    say "  done in $(since "$t0") s"
  fi
  local got
  got=$(psql_cmd -c "SELECT documentdb_api.binary_extended_version()")
  if [[ $got != "0.106.0 gitref: $DOCDB_GIT_VERSION" ]]; then
    say "warning: DocumentDB reports '$got', FerretDB v2.5.0 expects '0.106.0 gitref: $DOCDB_GIT_VERSION'"
  fi
}

psql_cmd() {
  PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_stop() {
  if pg_running; then
    local t0
    t0=$(now)
    say "stopping PostgreSQL..."
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null \
      || as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >/dev/null \
      || die "PostgreSQL did not stop (see $(rel "$PG_LOG"))"
    say "  stopped in $(since "$t0") s"
  else
    say "PostgreSQL not running"
  fi
}

# ---------------------------------------------------------------- ferretdb --
# proc_alive PID: true if PID exists and is not a zombie.
proc_alive() {
  local line state
  read -r line 2>/dev/null <"/proc/$1/stat" || return 1
  state=${line##*) }
  [[ ${state%% *} != Z ]]
}

# is_our_ferretdb PID: the process runs .infra/store/bin/ferretdb.
is_our_ferretdb() {
  local exe
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [[ $exe == "$FERRET_BIN" ]] && proc_alive "$1"
}

# ferret_pid: prints the pid of our FerretDB if it runs: from the pid file,
# else the listener of our port if it is our binary (a lost pid file). Never
# mistakes a reused pid for it.
ferret_pid() {
  local pid
  if [[ -f $FERRET_PID ]]; then
    pid=$(<"$FERRET_PID")
    if is_our_ferretdb "$pid"; then printf '%s' "$pid"; return 0; fi
  fi
  if command -v ss >/dev/null; then
    for pid in $(ss -Hltnp "sport = :$FERRET_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
      if is_our_ferretdb "$pid"; then printf '%s' "$pid"; return 0; fi
    done
  fi
  return 1
}

python_for_ping() {
  local py="$REPO/.venv/bin/python"
  [[ -x $py ]] && "$py" -c 'import pymongo' 2>/dev/null && printf '%s' "$py"
}

# wait_ready PID SECONDS: until the port answers a MongoDB ping (pymongo) or
# accepts TCP (fallback); fails early if PID exits.
wait_ready() {
  local pid=$1 secs=$2 py
  py=$(python_for_ping || true)
  if [[ -n $py ]]; then
    "$py" - "mongodb://$FERRET_ADDR/" "$pid" "$secs" <<'EOF'
import os, sys, time
from pymongo import MongoClient
from pymongo.errors import PyMongoError

uri, pid, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + secs


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


while True:
    if not alive(pid):
        print("[store] FerretDB exited during start-up", file=sys.stderr)
        sys.exit(2)
    try:
        with MongoClient(uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000) as c:
            c.admin.command("ping")
            info = c.admin.command("buildInfo")
            print(f"[store]   ping ok: FerretDB {info.get('ferretdb', {}).get('version', '?')}, "
                  f"MongoDB-compatible version {info.get('version')}")
        sys.exit(0)
    except PyMongoError:
        if time.monotonic() > deadline:
            print(f"[store] no ping answer from {uri} within {secs:.0f} s", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.2)
EOF
  else
    local end=$((SECONDS + secs))
    while :; do
      proc_alive "$pid" || { echo "[store] FerretDB exited during start-up" >&2; return 2; }
      if (exec 3<>"/dev/tcp/127.0.0.1/$FERRET_PORT") 2>/dev/null; then
        say "  port $FERRET_PORT accepts connections (no pymongo in .venv: TCP check only)"
        return 0
      fi
      (( SECONDS < end )) || { echo "[store] port $FERRET_PORT not answering within $secs s" >&2; return 1; }
      sleep 0.2
    done
  fi
}

ferret_start() {
  local pid
  if pid=$(ferret_pid); then
    say "FerretDB already running (pid $pid) on $FERRET_ADDR"
    wait_ready "$pid" 30 || die "FerretDB (pid $pid) does not answer; see $(rel "$FERRET_LOG"), or run infra/store.sh stop; infra/store.sh start"
    return 0
  fi
  rm -f "$FERRET_PID"
  if (exec 3<>"/dev/tcp/127.0.0.1/$FERRET_PORT") 2>/dev/null; then
    die "port $FERRET_PORT is already taken by another process (not ours: see \`ss -ltnp 'sport = :$FERRET_PORT'\`); stop it, or set STORE_PORT, or use MONGODB_URI for an existing MongoDB"
  fi
  mkdir -p "$RUN" "$LOGS" "$FERRET_STATE"
  local t0
  t0=$(now)
  say "starting FerretDB on $FERRET_ADDR (log: $(rel "$FERRET_LOG"))..."
  printf '\n==== %s infra/store.sh start\n' "$(date -Is)" >>"$FERRET_LOG"
  local before
  before=$(wc -l <"$FERRET_LOG")
  # setsid: own session, so it survives the calling shell and is not hit by
  # its terminal's signals; the pid of the background job is FerretDB's own.
  setsid nohup "$FERRET_BIN" --listen-addr="$FERRET_ADDR" --postgresql-url="$PG_URL" \
    --state-dir="$FERRET_STATE" --log-level="$FERRET_LOG_LEVEL" </dev/null >>"$FERRET_LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$FERRET_PID"
  if ! wait_ready "$pid" 30; then
    tail -n 20 "$FERRET_LOG" >&2
    ferret_stop >/dev/null 2>&1 || true
    die "FerretDB did not become ready (log: $(rel "$FERRET_LOG"))"
  fi
  say "  FerretDB up in $(since "$t0") s (pid $pid)"
  if tail -n +"$((before + 1))" "$FERRET_LOG" | grep -iE 'WARN|ERROR' | grep -ci 'version' >/dev/null; then
    say "warning: FerretDB logged a version warning; see $(rel "$FERRET_LOG")"
  fi
}

ferret_stop() {
  local pid i
  if ! pid=$(ferret_pid); then
    rm -f "$FERRET_PID"
    say "FerretDB not running"
    return 0
  fi
  say "stopping FerretDB (pid $pid)..."
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do          # 10 s
    proc_alive "$pid" || break
    sleep 0.1
  done
  if proc_alive "$pid"; then
    say "  FerretDB did not stop within 10 s after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do proc_alive "$pid" || break; sleep 0.1; done
  fi
  proc_alive "$pid" && die "FerretDB (pid $pid) is still running"
  rm -f "$FERRET_PID"
  say "  FerretDB stopped"
}

# --------------------------------------------------------------- commands --
lock() {
  mkdir -p "$STORE"
  exec 9>"$STORE/.lock"
  flock -w 1800 9 || die "another infra/store.sh is still running (lock $(rel "$STORE/.lock"))"
}

cmd_start() {
  if [[ -n ${MONGODB_URI:-} ]]; then
    say "MONGODB_URI is set: using the external store at $(sed -E 's#//[^/@]*@#//***@#' <<<"$MONGODB_URI"); nothing started"
    return 0
  fi
  local t0
  t0=$(now)
  QUIET_CACHED=1
  build
  pg_start
  ferret_start
  say "store ready in $(since "$t0") s: MONGODB_URI=mongodb://$FERRET_ADDR/"
}

cmd_stop() {
  ferret_stop
  pg_stop
}

cmd_status() {
  local ok=0 pid
  [[ -n ${MONGODB_URI:-} ]] && say "note: MONGODB_URI is set; the services use that store, this is the local one"
  if pid=$(ferret_pid); then
    say "FerretDB:   running (pid $pid) on $FERRET_ADDR"
  else
    say "FerretDB:   not running"; ok=1
  fi
  if pg_running; then
    say "PostgreSQL: running (pid $(head -n1 "$PGDATA/postmaster.pid" 2>/dev/null)) on 127.0.0.1:$PG_PORT, data $(rel "$PGDATA")"
  else
    say "PostgreSQL: not running"; ok=1
  fi
  return $ok
}

usage() {
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

main() {
  local cmd=${1:-}
  case $cmd in
    build)  lock; build ;;
    start)  lock; cmd_start ;;
    stop)   lock; cmd_stop ;;
    status) cmd_status ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

# Sourcing the file (for tests of its functions) defines them without running.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
