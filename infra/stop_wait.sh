# shellcheck shell=bash
# Sourced by infra/kafka.sh and infra/services.sh: after SIGTERM has been sent,
# wait for the processes to exit, then SIGKILL (their process group first) the
# ones still alive after the timeout. Uses the caller's say().
#
#   wait_or_kill TIMEOUT_SECONDS PIDS_ARRAY_NAME NAMES_ARRAY_NAME
wait_or_kill() {
    local timeout="$1" deadline alive i
    local -n _pids="$2" _names="$3"
    deadline=$(( $(date +%s) + timeout ))
    while :; do
        alive=0
        for i in "${!_pids[@]}"; do kill -0 "${_pids[$i]}" 2>/dev/null && alive=1; done
        (( alive )) || return 0
        if (( $(date +%s) >= deadline )); then
            for i in "${!_pids[@]}"; do
                if kill -0 "${_pids[$i]}" 2>/dev/null; then
                    say "${_names[$i]}: still running after ${timeout} s, sending SIGKILL"
                    kill -KILL -- "-${_pids[$i]}" 2>/dev/null || kill -KILL "${_pids[$i]}" 2>/dev/null || true
                fi
            done
            sleep 0.5
            return 0
        fi
        sleep 0.2
    done
}
