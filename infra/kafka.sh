#!/usr/bin/env bash
# Local Apache Kafka (KRaft, no ZooKeeper, no Docker) for ActionItems.
#
# The broker jars come from Maven Central (infra/kafka/pom.xml) and are cached
# under .infra/kafka/. Two independent setups can run at the same time:
#
#   single broker  (default, used by `make up` / the services / the tests)
#       node.id=1, PLAINTEXT localhost:9092, CONTROLLER localhost:9093
#       data .infra/kafka/single/, pid .infra/run/kafka-1.pid,
#       log  .infra/logs/kafka-1.log (+ kafka-1.out: stdout/stderr, WARN+)
#   3-node cluster (fault tests; RF 3 / min ISR 2 defaults; C1 JIT only, see java_cmd)
#       node N: PLAINTEXT localhost:1909{2,4,6}, CONTROLLER localhost:1909{3,5,7}
#       data .infra/kafka/cluster/nodeN/, pid .infra/run/kafka-cluster-N.pid,
#       log  .infra/logs/kafka-cluster-N.log
#       bootstrap: localhost:19092,localhost:19094,localhost:19096
#
# Usage: infra/kafka.sh COMMAND
#   fetch            download the jars (skipped when already done)
#   start            start the single broker (harmless when running)
#   stop             stop the single broker (SIGTERM, bounded wait, SIGKILL)
#   restart          stop + start (data kept)
#   status           show what runs (exit 0 when the single broker runs, else 3)
#   start-cluster    start the 3-node cluster (harmless when running)
#   stop-cluster     stop all cluster nodes
#   start-node N...  start cluster node(s) N (1..3), waits until they answer.
#                    Nodes started together wait together: with all three
#                    down, one node alone never gets a quorum (2 of 3).
#   stop-node N...   stop cluster node(s) N gracefully
#   kill-node N...   kill -9 cluster node(s) N
#   bootstrap        print the single broker's bootstrap address
#   cluster-bootstrap  print the cluster's bootstrap addresses
#   clean            stop everything and delete data (jars are kept)
#
# Environment:
#   KAFKA_BOOTSTRAP_SERVERS  when set to anything but localhost:9092, an
#                            external broker is used: `start` starts nothing
#                            (it only checks that the broker answers). Set to
#                            localhost:9092 while a broker not started from this
#                            checkout listens there: that one is used.
#   KAFKA_START_TIMEOUT      seconds to wait for a broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT       seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_EXTRA_JVM_OPTS     extra JVM options for the brokers (space-separated)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$REPO/infra/kafka/pom.xml"
LOG4J_CONF="$REPO/infra/kafka/log4j2.properties"
CACHE="$REPO/.infra/kafka"
LIBS="$CACHE/libs"
M2="$CACHE/m2"
FETCH_MARKER="$LIBS/.fetched"
RUN_DIR="$REPO/.infra/run"
LOG_DIR="$REPO/.infra/logs"
LOCK_FILE="$RUN_DIR/kafka.lock"
PY="$REPO/.venv/bin/python"

START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
SINGLE_BOOTSTRAP="localhost:9092"
CLUSTER_BOOTSTRAP="localhost:19092,localhost:19094,localhost:19096"
CLUSTER_VOTERS="1@localhost:19093,2@localhost:19095,3@localhost:19097"

say() { printf 'kafka.sh: %s\n' "$*"; }
# shellcheck source=infra/stop_wait.sh
source "$REPO/infra/stop_wait.sh"
die() { printf 'kafka.sh: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$RUN_DIR" "$LOG_DIR"

# Serialise start/stop of brokers (two `make up` at once must not race).
LOCKED=0
with_lock() {
    (( LOCKED )) && return 0
    exec 9>"$LOCK_FILE"
    flock -w 300 9 || die "could not get $LOCK_FILE within 300 s (another infra/kafka.sh is busy)"
    LOCKED=1
}

# ---------------------------------------------------------------- fetch ----

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

fetched() {
    [[ -f "$FETCH_MARKER" ]] && [[ "$(cat "$FETCH_MARKER")" == "$(pom_hash)" ]] \
        && compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null
}

cmd_fetch() {
    if fetched; then
        say "jars already fetched ($(find "$LIBS" -name '*.jar' | wc -l) in $LIBS); skipping"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (Maven 3.8+ is needed to fetch Kafka)"
    command -v java >/dev/null || die "java not found (Java 17+ is needed to run Kafka)"
    local t0; t0="$(now)"
    say "fetching Kafka jars from Maven Central ($POM) into $LIBS ..."
    say "(first time: ~45 MB; local Maven repo $M2)"
    rm -rf "$LIBS"
    mkdir -p "$LIBS" "$M2"
    # Packaging 'pom': copy-dependencies runs without compiling anything.
    # Maven's own output goes to a file (shown on failure): -q still prints
    # colour reset codes on this Maven version.
    if ! (cd "$REPO/infra/kafka" && mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$LIBS" -Dmaven.repo.local="$M2") \
            >"$CACHE/fetch.log" 2>&1; then
        tail -n 40 "$CACHE/fetch.log" >&2
        rm -rf "$LIBS"
        die "mvn dependency:copy-dependencies failed (is Maven Central reachable? full output: $CACHE/fetch.log)"
    fi
    compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar in $LIBS after mvn"
    pom_hash >"$FETCH_MARKER"
    say "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $(elapsed "$t0") s"
}

# ------------------------------------------------------- node descriptors ----
# A node is named "single" (the one broker) or "cluster-N".

node_dir() {
    case "$1" in
        single) echo "$CACHE/single" ;;
        cluster-*) echo "$CACHE/cluster/node${1#cluster-}" ;;
    esac
}
node_pidfile() {
    case "$1" in
        single) echo "$RUN_DIR/kafka-1.pid" ;;
        cluster-*) echo "$RUN_DIR/kafka-$1.pid" ;;
    esac
}
node_log() {
    case "$1" in
        single) echo "$LOG_DIR/kafka-1.log" ;;
        cluster-*) echo "$LOG_DIR/kafka-$1.log" ;;
    esac
}
node_out() { local l; l="$(node_log "$1")"; echo "${l%.log}.out"; }
node_port() {     # PLAINTEXT port
    case "$1" in
        single) echo 9092 ;;
        cluster-*) echo $((19090 + 2 * ${1#cluster-})) ;;
    esac
}
node_cport() {    # CONTROLLER port
    case "$1" in
        single) echo 9093 ;;
        cluster-*) echo $((19091 + 2 * ${1#cluster-})) ;;
    esac
}
node_id() { case "$1" in single) echo 1 ;; cluster-*) echo "${1#cluster-}" ;; esac; }
node_heap() { case "$1" in single) echo 512m ;; cluster-*) echo 384m ;; esac; }
cluster_id_file() {
    case "$1" in
        single) echo "$CACHE/single/cluster.id" ;;
        cluster-*) echo "$CACHE/cluster/cluster.id" ;;
    esac
}

# "1 3" -> "cluster-1 cluster-3"; at least one number, each 1..3.
NODES=()
node_args() {
    NODES=()
    (( $# )) || die "give one or more node numbers (1, 2, 3)"
    local a
    for a in "$@"; do
        [[ "$a" =~ ^[123]$ ]] || die "node number must be 1, 2 or 3 (got '$a')"
        NODES+=("cluster-$a")
    done
}

write_config() {
    local n="$1" dir id port cport
    dir="$(node_dir "$n")"; id="$(node_id "$n")"; port="$(node_port "$n")"; cport="$(node_cport "$n")"
    mkdir -p "$dir/data"
    {
        echo "# Generated by infra/kafka.sh; rewritten on every start. Do not edit."
        echo "process.roles=broker,controller"
        echo "node.id=$id"
        echo "listeners=PLAINTEXT://localhost:$port,CONTROLLER://localhost:$cport"
        echo "advertised.listeners=PLAINTEXT://localhost:$port"
        echo "controller.listener.names=CONTROLLER"
        echo "inter.broker.listener.name=PLAINTEXT"
        echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        echo "log.dirs=$dir/data"
        echo "auto.create.topics.enable=false"
        echo "group.initial.rebalance.delay.ms=0"
        echo "log.cleaner.backoff.ms=500"
        echo "num.partitions=1"
        if [[ "$n" == single ]]; then
            echo "controller.quorum.voters=1@localhost:9093"
            echo "default.replication.factor=1"
            echo "min.insync.replicas=1"
            echo "offsets.topic.replication.factor=1"
            echo "transaction.state.log.replication.factor=1"
            echo "transaction.state.log.min.isr=1"
            echo "share.coordinator.state.topic.replication.factor=1"
            echo "share.coordinator.state.topic.min.isr=1"
        else
            echo "controller.quorum.voters=$CLUSTER_VOTERS"
            echo "default.replication.factor=3"
            echo "min.insync.replicas=2"
            echo "offsets.topic.replication.factor=3"
            echo "transaction.state.log.replication.factor=3"
            echo "transaction.state.log.min.isr=2"
            echo "share.coordinator.state.topic.replication.factor=3"
            echo "share.coordinator.state.topic.min.isr=2"
            # Notice a dead broker in ~3 s instead of 9 s.
            echo "broker.session.timeout.ms=3000"
            echo "broker.heartbeat.interval.ms=500"
        fi
    } >"$dir/server.properties"
}

java_cmd() {  # sets JAVA_ARGS for node $1
    local n="$1" heap extra=()
    heap="$(node_heap "$n")"
    JAVA_ARGS=(
        "-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    )
    # Cluster nodes (fault tests): C1 JIT only. Three JVMs starting at once on
    # 2 cores were up in ~8-10 s instead of ~16-26 s; throughput is lower but
    # ample for tests. Undo with KAFKA_EXTRA_JVM_OPTS=-XX:TieredStopAtLevel=4.
    [[ "$n" == single ]] || JAVA_ARGS+=(-XX:TieredStopAtLevel=1)
    # Extra JVM options (space-separated); later options win.
    [[ -z "${KAFKA_EXTRA_JVM_OPTS:-}" ]] || read -r -a extra <<<"$KAFKA_EXTRA_JVM_OPTS"
    JAVA_ARGS+=(
        ${extra[@]+"${extra[@]}"}
        "-Dlog4j2.configurationFile=$LOG4J_CONF"
        "-Dkafka.log.file=$(node_log "$n")"
        "-Dkafka.logs.dir=$LOG_DIR"
        "-Dactionitems.kafka.node=$n"
        -cp "$LIBS/*"
    )
}

# Short-lived tool JVMs start faster with C1 only and the serial GC.
TOOL_JAVA=(java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx256m -cp "$LIBS/*"
           "-Dlog4j2.configurationFile=$LOG4J_CONF" -Dkafka.log.file=/dev/null)

# Make sure the cluster id file of node $1's setup exists. Kept across
# restarts; taken over from an existing formatted data dir if it was lost.
ensure_cluster_id() {
    local n="$1" idfile dir cid
    idfile="$(cluster_id_file "$n")"
    [[ -s "$idfile" ]] && return 0
    mkdir -p "$(dirname "$idfile")"
    local dirs=("$CACHE/single")
    [[ "$n" == single ]] || dirs=("$CACHE/cluster/node1" "$CACHE/cluster/node2" "$CACHE/cluster/node3")
    for dir in "${dirs[@]}"; do
        if [[ -f "$dir/data/meta.properties" ]]; then
            sed -n 's/^cluster\.id=//p' "$dir/data/meta.properties" >"$idfile"
            [[ -s "$idfile" ]] && return 0
        fi
    done
    # Same format as kafka.tools.StorageTool random-uuid (base64url of 16
    # random bytes, no padding, not starting with '-'), without a JVM.
    cid="-"
    while [[ "$cid" == -* || ${#cid} -ne 22 ]]; do
        cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    echo "$cid" >"$idfile"
}

# Format node $1's storage once (no-op when meta.properties exists).
format_storage() {
    local n="$1" dir idfile cid have t0
    dir="$(node_dir "$n")"; idfile="$(cluster_id_file "$n")"
    cid="$(cat "$idfile")"
    if [[ -f "$dir/data/meta.properties" ]]; then
        have="$(sed -n 's/^cluster\.id=//p' "$dir/data/meta.properties")"
        [[ "$have" == "$cid" ]] || die "$n: $dir/data belongs to cluster $have, but $idfile says $cid ('infra/kafka.sh clean' wipes the data)"
        return 0
    fi
    t0="$(now)"
    say "$n: formatting storage in $dir/data (cluster id $cid)"
    if ! "${TOOL_JAVA[@]}" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
            >"$dir/format.out" 2>&1; then
        cat "$dir/format.out" >&2
        die "$n: formatting storage failed"
    fi
    say "$n: formatted in $(elapsed "$t0") s"
}

# pid of node $1 if it is alive and really our broker, else empty.
node_pid() {
    local n="$1" pf pid
    pf="$(node_pidfile "$n")"
    [[ -f "$pf" ]] || return 0
    pid="$(cat "$pf" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
            && grep -q -- "-Dactionitems.kafka.node=$n .*kafka\.Kafka" < <(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null); then
        echo "$pid"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Is confluent-kafka in the venv (for real metadata checks)? Asked once.
HAVE_PY_KAFKA=""
have_py_kafka() {
    if [[ -z "$HAVE_PY_KAFKA" ]]; then
        HAVE_PY_KAFKA=no
        [[ -x "$PY" ]] && "$PY" -c 'import confluent_kafka' 2>/dev/null && HAVE_PY_KAFKA=yes
    fi
    [[ "$HAVE_PY_KAFKA" == yes ]]
}

# Ask the broker(s) for metadata. $1 bootstrap, $2 number of brokers expected,
# $3 (optional) a broker id that must be among them.
metadata_ok() {
    "$PY" - "$1" "$2" "${3:-}" <<'EOF' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
bootstrap, want, must = sys.argv[1], int(sys.argv[2]), sys.argv[3]
a = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
md = a.list_topics(timeout=2)
ids = set(md.brokers)
ok = len(ids) >= want and (not must or int(must) in ids) and md.controller_id is not None
sys.exit(0 if ok else 1)
EOF
}

# Log of node $1 written since byte offset $2 (all of it if it rolled over).
log_since() {
    local log size
    log="$(node_log "$1")"
    size="$(stat -c %s "$log" 2>/dev/null || echo 0)"
    if (( size + 1 >= $2 )); then tail -c +"$2" "$log"; else cat "$log"; fi
}

# Node $1 answers: its port is open, it logged "Kafka Server started" since
# launch, and (with confluent-kafka in the venv) it returns metadata listing
# itself. The cheap checks come first: a Python poll every 0.25 s would eat
# CPU the starting JVM needs on 2 cores.
node_ready() {
    local n="$1" since="$2"
    port_open "$(node_port "$n")" || return 1
    # not `log_since | grep -q`: under pipefail, grep -q leaving at the first match kills
    # the writer with SIGPIPE once more than a pipe's worth of log follows the line, and
    # the pipeline fails though the line is there (a node that logged over 64 KiB after
    # its start-up line was "not answering" until the 90 s timeout)
    grep -q "Kafka Server started" < <(log_since "$n" "$since" 2>/dev/null) || return 1
    if have_py_kafka; then
        metadata_ok "localhost:$(node_port "$n")" 1 "$(node_id "$n")" || return 1
    fi
}

# Launch node $1 in the background (no waiting). Sets LAUNCH_OFFSET to the byte
# offset (1-based, for tail -c +N) of its log at launch time.
launch_node() {
    local n="$1" pf log out pid
    pf="$(node_pidfile "$n")"; log="$(node_log "$n")"; out="$(node_out "$n")"
    java_cmd "$n"
    touch "$log"
    LAUNCH_OFFSET=$(( $(stat -c %s "$log") + 1 ))
    {
        echo "===== $(date -Is) starting $n (pid file $pf) ====="
    } >>"$out"
    rm -f "$pf"
    # setsid: own session/process group, immune to the caller's Ctrl-C and
    # terminal hang-up; the inner bash writes its own pid, then execs java
    # (same pid), so the pid file holds the JVM's pid.
    # shellcheck disable=SC2016  # expanded by the inner bash
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pf" \
        java "${JAVA_ARGS[@]}" kafka.Kafka "$(node_dir "$n")/server.properties" \
        >>"$out" 2>&1 </dev/null 9>&- &
    for _ in $(seq 1 50); do [[ -s "$pf" ]] && break; sleep 0.1; done
    pid="$(cat "$pf" 2>/dev/null || true)"
    [[ -n "$pid" ]] || die "$n: did not write its pid file $pf"
}

stop_hint() { case "$1" in single) echo stop ;; *) echo "stop-node ${1#cluster-}" ;; esac; }

# Wait until node $1 (launched with log offset $2) answers; fail if it dies.
wait_node() {
    local n="$1" since="$2" t0="$3" pf pid deadline
    pf="$(node_pidfile "$n")"
    pid="$(cat "$pf")"
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pf"
            echo "---- last lines of $(node_out "$n") ----" >&2; tail -n 30 "$(node_out "$n")" >&2 || true
            echo "---- last ERROR lines of $(node_log "$n") ----" >&2
            log_since "$n" "$since" 2>/dev/null | grep -E 'ERROR|FATAL|Exception' | tail -n 20 >&2 || true
            die "$n: the broker exited during start-up (see the logs above)"
        fi
        if node_ready "$n" "$since"; then
            say "$n: up on localhost:$(node_port "$n") (pid $pid) in $(elapsed "$t0") s"
            return 0
        fi
        if (( $(date +%s) >= deadline )); then
            echo "---- last lines of $(node_log "$n") ----" >&2; tail -n 30 "$(node_log "$n")" >&2 || true
            die "$n: not answering on localhost:$(node_port "$n") after ${START_TIMEOUT} s (pid $pid left running; 'infra/kafka.sh $(stop_hint "$n")' stops it)"
        fi
        sleep 0.25
    done
}

# A node that already runs must also answer (bounded wait).
wait_answering() {
    local n="$1" deadline=$(( $(date +%s) + START_TIMEOUT ))
    while :; do
        if port_open "$(node_port "$n")" \
                && { ! have_py_kafka || metadata_ok "localhost:$(node_port "$n")" 1 "$(node_id "$n")"; }; then
            return 0
        fi
        (( $(date +%s) < deadline )) || die "$n: runs (pid $(node_pid "$n")) but does not answer on localhost:$(node_port "$n") after ${START_TIMEOUT} s; see $(node_log "$n")"
        sleep 0.25
    done
}

# Start node(s) given as arguments and wait for all. Storage of several new
# nodes is formatted in parallel; the JVMs are launched together.
start_nodes() {
    local n p pid t0 todo=() offs=() fpids=() i rc=0
    t0="$(now)"
    for n in "$@"; do
        pid="$(node_pid "$n")"
        if [[ -n "$pid" ]]; then
            wait_answering "$n"
            say "$n: already running (pid $pid) on localhost:$(node_port "$n")"
            continue
        fi
        rm -f "$(node_pidfile "$n")"
        for p in "$(node_port "$n")" "$(node_cport "$n")"; do
            if port_open "$p"; then
                local hint="stop it"
                [[ "$n" == single ]] && hint="stop it, or export KAFKA_BOOTSTRAP_SERVERS=localhost:9092 to use the broker that is there"
                die "$n: port $p is already in use by another process ($(ss -ltnpH "sport = :$p" 2>/dev/null | awk '{print $NF}' | head -n1)); $hint"
            fi
        done
        write_config "$n"
        ensure_cluster_id "$n"
        todo+=("$n")
    done
    (( ${#todo[@]} )) || return 0
    for n in "${todo[@]}"; do
        format_storage "$n" &
        fpids+=($!)
    done
    for i in "${!fpids[@]}"; do wait "${fpids[$i]}" || rc=1; done
    (( rc == 0 )) || die "formatting storage failed"
    for n in "${todo[@]}"; do
        launch_node "$n"
        offs+=("$LAUNCH_OFFSET")
        say "$n: launched (pid $(cat "$(node_pidfile "$n")"), log $(node_log "$n"))"
    done
    for i in "${!todo[@]}"; do
        wait_node "${todo[$i]}" "${offs[$i]}" "$t0"
    done
}

# Stop node(s) given as arguments, in parallel: SIGTERM, bounded wait, SIGKILL.
stop_nodes() {
    local n pid t0 pids=() names=() i
    t0="$(now)"
    for n in "$@"; do
        pid="$(node_pid "$n")"
        if [[ -z "$pid" ]]; then
            if [[ -f "$(node_pidfile "$n")" ]]; then
                say "$n: stale pid file removed"
                rm -f "$(node_pidfile "$n")"
            fi
            continue
        fi
        kill -TERM "$pid" 2>/dev/null || true
        # A node frozen by a test (SIGSTOP) would only see the TERM once thawed.
        kill -CONT "$pid" 2>/dev/null || true
        pids+=("$pid"); names+=("$n")
        say "$n: SIGTERM sent (pid $pid)"
    done
    (( ${#pids[@]} )) || return 0
    wait_or_kill "$STOP_TIMEOUT" pids names
    for i in "${!pids[@]}"; do rm -f "$(node_pidfile "${names[$i]}")"; done
    say "stopped ${names[*]} in $(elapsed "$t0") s"
}

kill_node() {
    local n="$1" pid
    pid="$(node_pid "$n")"
    if [[ -z "$pid" ]]; then say "$n: not running"; rm -f "$(node_pidfile "$n")"; return 0; fi
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$(node_pidfile "$n")"
    say "$n: killed with SIGKILL (pid $pid)"
}

external_bootstrap() {
    # Anything but the local default means: use that broker, run nothing here.
    local b="${KAFKA_BOOTSTRAP_SERVERS:-}"
    [[ -n "$b" && "$b" != "localhost:9092" && "$b" != "127.0.0.1:9092" ]]
}

# ------------------------------------------------------------- commands ----

cmd_start() {
    if external_bootstrap; then
        say "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS: using that external broker, starting nothing"
        if have_py_kafka; then
            local deadline=$(( $(date +%s) + ${KAFKA_START_TIMEOUT:-30} ))
            until metadata_ok "$KAFKA_BOOTSTRAP_SERVERS" 1; do
                (( $(date +%s) < deadline )) || die "external broker $KAFKA_BOOTSTRAP_SERVERS does not answer"
                sleep 1
            done
            say "external broker $KAFKA_BOOTSTRAP_SERVERS answers"
        fi
        return 0
    fi
    with_lock
    cmd_fetch
    if [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" && -z "$(node_pid single)" ]] && port_open 9092; then
        # KAFKA_BOOTSTRAP_SERVERS=localhost:9092 and something not started by
        # this checkout serves it (another checkout's broker): use that one.
        say "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is served by a broker not started from this checkout: using it, starting nothing"
        return 0
    fi
    start_nodes single
}

cmd_stop() {
    with_lock
    stop_nodes single
    if external_bootstrap; then
        say "(KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is external: left alone)"
    fi
}

cmd_start_cluster() {
    with_lock
    cmd_fetch
    start_nodes cluster-1 cluster-2 cluster-3
    if have_py_kafka; then
        local deadline=$(( $(date +%s) + START_TIMEOUT ))
        until metadata_ok "$CLUSTER_BOOTSTRAP" 3; do
            (( $(date +%s) < deadline )) || die "cluster: not all 3 brokers registered after ${START_TIMEOUT} s"
            sleep 0.25
        done
    fi
    say "cluster up: bootstrap $CLUSTER_BOOTSTRAP"
}

cmd_status() {
    local n pid rc=3
    for n in single cluster-1 cluster-2 cluster-3; do
        pid="$(node_pid "$n")"
        if [[ -n "$pid" ]]; then
            local rss; rss="$(awk '/VmRSS/ {printf "%d MB", $2/1024}' "/proc/$pid/status" 2>/dev/null || true)"
            printf 'kafka %-10s running  pid %-8s localhost:%s (controller :%s) rss %s\n' \
                "$n" "$pid" "$(node_port "$n")" "$(node_cport "$n")" "$rss"
            [[ "$n" == single ]] && rc=0
        elif [[ "$n" == single ]]; then
            printf 'kafka %-10s stopped\n' "$n"
        elif [[ -d "$(node_dir "$n")" ]]; then
            printf 'kafka %-10s stopped\n' "$n"
        fi
    done
    if external_bootstrap; then
        echo "kafka external   KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
        rc=0
    fi
    return "$rc"
}

cmd_clean() {
    with_lock
    stop_nodes single cluster-1 cluster-2 cluster-3
    rm -rf "$CACHE/single" "$CACHE/cluster"
    rm -f "$LOG_DIR"/kafka-*.log* "$LOG_DIR"/kafka-*.out
    say "deleted broker data and logs (jars kept in $LIBS)"
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

main() {
    local cmd="${1:-}"
    case "$cmd" in
        fetch) with_lock; cmd_fetch ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_stop; cmd_start ;;
        status) cmd_status ;;
        start-cluster) cmd_start_cluster ;;
        stop-cluster) with_lock; stop_nodes cluster-1 cluster-2 cluster-3 ;;
        start-node) shift; node_args "$@"; with_lock; cmd_fetch; start_nodes "${NODES[@]}" ;;
        stop-node) shift; node_args "$@"; with_lock; stop_nodes "${NODES[@]}" ;;
        kill-node) shift; node_args "$@"; for n in "${NODES[@]}"; do kill_node "$n"; done ;;
        bootstrap) echo "${KAFKA_BOOTSTRAP_SERVERS:-$SINGLE_BOOTSTRAP}" ;;
        cluster-bootstrap) echo "$CLUSTER_BOOTSTRAP" ;;
        clean) cmd_clean ;;
        -h|--help|help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
