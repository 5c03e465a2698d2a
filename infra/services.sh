#!/usr/bin/env bash
# Start/stop the three ActionItems Python services in the background.
#
#   command-api  uvicorn command_api.app:app  http://127.0.0.1:8000
#   query-api    uvicorn query_api.app:app    http://127.0.0.1:8001
#   projector    projector run                http://127.0.0.1:8002 (health/metrics)
#
# Usage: infra/services.sh start|stop|restart|status [SERVICE...]
#   (no SERVICE = all three; SERVICE is command-api, query-api or projector)
#
# pid files: .infra/run/<service>.pid    logs: .infra/logs/<service>.log
# The services run with the repository as working directory (a .env file
# there is honoured by the services) and inherit this environment
# (KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI, AUTH_..., ...). Without any AUTH_* setting
# they verify bearer tokens with development keys created in .infra/auth/.
#
# Environment:
#   SERVICES_START_TIMEOUT  seconds to wait for GET /healthz == 200 (default 30)
#   SERVICES_STOP_TIMEOUT   seconds to wait after SIGTERM (drain) before SIGKILL (default 20)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
RUN_DIR="$REPO/.infra/run"
LOG_DIR="$REPO/.infra/logs"
START_TIMEOUT="${SERVICES_START_TIMEOUT:-30}"
STOP_TIMEOUT="${SERVICES_STOP_TIMEOUT:-20}"
ALL=(command-api query-api projector)

say() { printf 'services.sh: %s\n' "$*"; }
# shellcheck source=infra/stop_wait.sh
source "$REPO/infra/stop_wait.sh"
die() { printf 'services.sh: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$RUN_DIR" "$LOG_DIR"

svc_port() {
    case "$1" in
        command-api) echo 8000 ;;
        query-api) echo 8001 ;;
        projector) echo 8002 ;;
        *) die "unknown service '$1' (known: ${ALL[*]})" ;;
    esac
}
svc_cmd() {  # sets CMD
    case "$1" in
        command-api) CMD=("$VENV/bin/uvicorn" command_api.app:app --host 127.0.0.1 --port 8000 --timeout-graceful-shutdown 10 --no-server-header) ;;
        query-api) CMD=("$VENV/bin/uvicorn" query_api.app:app --host 127.0.0.1 --port 8001 --timeout-graceful-shutdown 10 --no-server-header) ;;
        projector) CMD=("$VENV/bin/projector" run) ;;
    esac
}
svc_pidfile() { echo "$RUN_DIR/$1.pid"; }
svc_log() { echo "$LOG_DIR/$1.log"; }
svc_url() { echo "http://127.0.0.1:$(svc_port "$1")"; }

# pid of service $1 if alive and really ours (marker in its environment), else empty.
svc_pid() {
    local s="$1" pf pid
    pf="$(svc_pidfile "$s")"
    [[ -f "$pf" ]] || return 0
    pid="$(cat "$pf" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
            && grep -qx "ACTIONITEMS_SERVICE=$s" < <(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null); then
        echo "$pid"
    fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

healthz_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(svc_url "$1")/healthz" 2>/dev/null || true
}

launch() {
    local s="$1" pf log
    pf="$(svc_pidfile "$s")"; log="$(svc_log "$s")"
    svc_cmd "$s"
    [[ -x "${CMD[0]}" ]] || die "$s: ${CMD[0]} not found (run 'make venv' first)"
    if port_open "$(svc_port "$s")"; then
        die "$s: port $(svc_port "$s") is already in use by another process ($(ss -ltnpH "sport = :$(svc_port "$s")" 2>/dev/null | awk '{print $NF}' | head -n1))"
    fi
    echo "===== $(date -Is) starting $s: ${CMD[*]} =====" >>"$log"
    rm -f "$pf"
    # Own session (setsid): not hit by the caller's Ctrl-C; the inner bash
    # writes its pid and execs the service, so the pid file holds its pid.
    # The subshell execs setsid, so no helper process is left holding the
    # caller's stdout (`make up | tail` must end). ACTIONITEMS_SERVICE marks
    # the process as ours for the pid check.
    (
        cd "$REPO" || exit 1
        export ACTIONITEMS_SERVICE="$s" PYTHONUNBUFFERED=1
        # shellcheck disable=SC2016  # $$, $1 and $@ are expanded by the inner bash
        exec setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pf" "${CMD[@]}"
    ) >>"$log" 2>&1 </dev/null &
    for _ in $(seq 1 50); do [[ -s "$pf" ]] && break; sleep 0.1; done
    [[ -s "$pf" ]] || die "$s: did not write its pid file $pf"
}

# Bearer-token keys: without any AUTH_* setting (environment or .env), the services
# verify tokens with the development key pair in .infra/auth/ (created once here;
# `python -m servicekit.mint_token` signs with its private half).
dev_auth_keys() {
    if [[ -n "${AUTH_DISABLED:-}${AUTH_JWKS_FILE:-}${AUTH_PUBLIC_KEY_FILES:-}${AUTH_HS256_SECRET:-}" ]]; then
        return 0
    fi
    if [[ -f "$REPO/.env" ]] && grep -qiE '^[[:space:]]*AUTH_(DISABLED|JWKS_FILE|PUBLIC_KEY_FILES|HS256_SECRET)=' "$REPO/.env"; then
        return 0
    fi
    AUTH_JWKS_FILE="$(cd "$REPO" && "$VENV/bin/python" -m infra.dev_keys)" \
        || die "could not create the development keys in .infra/auth/"
    export AUTH_JWKS_FILE
    say "bearer tokens: development keys ($AUTH_JWKS_FILE)"
}

cmd_start() {
    local s pid t0 todo=() failed=0 deadline code
    t0="$(now)"
    dev_auth_keys
    for s in "$@"; do
        pid="$(svc_pid "$s")"
        if [[ -n "$pid" ]]; then
            say "$s: already running (pid $pid)"
        else
            [[ -f "$(svc_pidfile "$s")" ]] && { say "$s: stale pid file removed"; rm -f "$(svc_pidfile "$s")"; }
            launch "$s"
            say "$s: launched (pid $(cat "$(svc_pidfile "$s")"), log $(svc_log "$s"))"
        fi
        todo+=("$s")
    done
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    for s in "${todo[@]}"; do
        while :; do
            pid="$(svc_pid "$s")"
            if [[ -z "$pid" ]]; then
                rm -f "$(svc_pidfile "$s")"
                echo "---- last lines of $(svc_log "$s") ----" >&2
                tail -n 30 "$(svc_log "$s")" >&2 || true
                say "$s: exited during start-up (log above)" >&2
                failed=1; break
            fi
            code="$(healthz_code "$s")"
            if [[ "$code" == 200 ]]; then
                say "$s: healthy at $(svc_url "$s") (pid $pid, $(elapsed "$t0") s)"
                break
            fi
            if (( $(date +%s) >= deadline )); then
                echo "---- last lines of $(svc_log "$s") ----" >&2
                tail -n 30 "$(svc_log "$s")" >&2 || true
                say "$s: GET $(svc_url "$s")/healthz not 200 after ${START_TIMEOUT} s (last: ${code:-no answer}; pid $pid left running)" >&2
                failed=1; break
            fi
            sleep 0.25
        done
    done
    (( failed == 0 )) || die "not all services came up ('infra/services.sh stop' stops what runs)"
    for s in "${todo[@]}"; do
        printf '  %-12s %s\n' "$s" "$(svc_url "$s")"
    done
}

cmd_stop() {
    local s pid t0 pids=() names=() i
    t0="$(now)"
    for s in "$@"; do
        pid="$(svc_pid "$s")"
        if [[ -z "$pid" ]]; then
            [[ -f "$(svc_pidfile "$s")" ]] && { say "$s: stale pid file removed"; rm -f "$(svc_pidfile "$s")"; }
            continue
        fi
        # The whole process group (setsid made the service its leader).
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        kill -CONT -- "-$pid" 2>/dev/null || true   # in case a test froze it (SIGSTOP)
        pids+=("$pid"); names+=("$s")
        say "$s: SIGTERM sent (pid $pid)"
    done
    if (( ${#pids[@]} == 0 )); then say "nothing running"; return 0; fi
    wait_or_kill "$STOP_TIMEOUT" pids names
    # Leftover children in the groups (none expected).
    for i in "${!pids[@]}"; do
        kill -KILL -- "-${pids[$i]}" 2>/dev/null || true
        rm -f "$(svc_pidfile "${names[$i]}")"
    done
    say "stopped ${names[*]} in $(elapsed "$t0") s"
}

cmd_status() {
    local s pid rc=0 code
    for s in "$@"; do
        pid="$(svc_pid "$s")"
        if [[ -n "$pid" ]]; then
            code="$(healthz_code "$s")"
            printf '%-12s running  pid %-8s %s  healthz %s\n' "$s" "$pid" "$(svc_url "$s")" "${code:-no answer}"
            [[ "$code" == 200 ]] || rc=3
        else
            printf '%-12s stopped\n' "$s"
            rc=3
        fi
    done
    return "$rc"
}

main() {
    local cmd="${1:-}"; shift || true
    local svcs=("$@")
    (( ${#svcs[@]} )) || svcs=("${ALL[@]}")
    for s in "${svcs[@]}"; do svc_port "$s" >/dev/null; done
    case "$cmd" in
        start) cmd_start "${svcs[@]}" ;;
        stop) cmd_stop "${svcs[@]}" ;;
        restart) cmd_stop "${svcs[@]}"; cmd_start "${svcs[@]}" ;;
        status) cmd_status "${svcs[@]}" ;;
        *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
