#!/usr/bin/env bash
# Stop a control plane started by up.sh: kills exactly the processes listed in
# STATE_DIR/pids (newest first: SIGTERM, then SIGKILL after a grace period) and
# removes the etcd data directory. Safe to run twice.
#
#   hack/control-plane/down.sh STATE_DIR
set -uo pipefail

log() { printf '[control-plane/down] %s\n' "$*" >&2; }
[ $# -eq 1 ] || { log "usage: $0 STATE_DIR"; exit 2; }
state=$1
pids="$state/pids"
grace=${CONTROL_PLANE_STOP_GRACE:-10}

# Is pid still the process we started (and not a recycled pid)?
ours() { # pid name
    local exe
    kill -0 "$1" 2>/dev/null || return 1
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    [ "$2" = kwok ] && [ "$(basename "$exe")" = env ] && return 0  # not exec'd yet
    [ "$(basename "${exe% (deleted)}")" = "$2" ]
}

if [ -f "$pids" ]; then
    # newest first: kwok, scheduler, controller manager, apiserver, etcd
    tac "$pids" | while read -r name pid _; do
        [ -n "${pid:-}" ] || continue
        if ! ours "$pid" "$name"; then
            continue
        fi
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq $((grace * 10))); do
            ours "$pid" "$name" || break
            sleep 0.1
        done
        if ours "$pid" "$name"; then
            log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        log "stopped $name (pid $pid)"
    done
    rm -f "$pids"
fi

if [ -f "$state/etcd-data-dir" ]; then
    data=$(cat "$state/etcd-data-dir")
    case "$data" in
        */kubeload-etcd.*) rm -rf "$data" ;;
    esac
    rm -f "$state/etcd-data-dir"
fi
rm -f "$state/cluster.env"
exit 0
