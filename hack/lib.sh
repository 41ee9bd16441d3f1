#!/usr/bin/env bash
# Shared settings for the hack/ scripts. Source it; do not run it.

# Pinned versions. Changing one of these (or the helper go.mod/go.sum files) rebuilds that set.
K8S_VERSION=v1.34.12
ETCD_VERSION=v3.6.16
COREDNS_VERSION=v1.14.7
HELM3_VERSION=v3.22.0
HELM4_VERSION=v4.3.1

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Build caches live outside the work tree so that fresh clones and CI runs reuse them.
CACHE_ROOT=${DASK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dask-operator}
CLUSTER_DIR=${CLUSTER_DIR:-$REPO_ROOT/.cluster}

export GOTOOLCHAIN=local
export CGO_ENABLED=0

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# key_dir NAME VERSION HELPER_DIR: cache folder for one helper module's binaries, keyed by the
# pinned version and a hash of the helper module files.
key_dir() {
  local name=$1 version=$2 helper=$3 sum
  sum=$(cat "$helper/go.mod" "$helper/go.sum" | sha256sum | cut -c1-12)
  printf '%s/bin/%s-%s-%s' "$CACHE_ROOT" "$name" "$version" "$sum"
}

k8s_bin_dir() { key_dir kubernetes "$K8S_VERSION" "$REPO_ROOT/hack/go/k8s"; }
etcd_bin_dir() { key_dir etcd "$ETCD_VERSION" "$REPO_ROOT/hack/go/etcd"; }
coredns_bin_dir() { key_dir coredns "$COREDNS_VERSION" "$REPO_ROOT/hack/go/coredns"; }
helm3_bin_dir() { key_dir helm3 "$HELM3_VERSION" "$REPO_ROOT/hack/go/helm3"; }
helm4_bin_dir() { key_dir helm4 "$HELM4_VERSION" "$REPO_ROOT/hack/go/helm4"; }

# The pinned Helm CLIs (built by hack/build-binaries.sh; the chart is tested with both majors).
# Exported so that tests started from a script that sources this file (cargo test, pytest) find them.
HELM3=$(helm3_bin_dir)/helm
HELM4=$(helm4_bin_dir)/helm
export HELM3 HELM4

# The one host port: the API server relay on 127.0.0.1 (everything else lives in the cluster's network
# namespace). Override to run next to something that already uses it.
APISERVER_PORT=${APISERVER_PORT:-6443}

RUN_DIR=$CLUSTER_DIR/run
LOG_DIR=$CLUSTER_DIR/logs
PKI_DIR=$CLUSTER_DIR/pki
STATE_DIR=$CLUSTER_DIR/state
KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig

# --- processes: started by us, recorded by PID and start time, stopped only by that record ---

# proc_start_time PID: the process's start time in clock ticks (field 22 of /proc/PID/stat), for a
# live process only: a zombie (state Z or X) that PID 1 has not reaped yet counts as gone.
proc_start_time() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '$1 != "Z" && $1 != "X" {print $20}'; }

# daemon_pid NAME: prints the PID recorded for NAME if that very process is still alive.
daemon_pid() {
  local file=$RUN_DIR/$1.pid pid start
  [[ -f $file ]] || return 1
  read -r pid start <"$file" || return 1
  [[ -n ${pid:-} && -n ${start:-} && "$(proc_start_time "$pid")" == "$start" ]] || return 1
  printf '%s\n' "$pid"
}

# start_daemon NAME CMD...: starts CMD in its own session, logs to logs/NAME.log, records its PID.
start_daemon() {
  local name=$1; shift
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  printf '\n=== %s start: %s\n' "$(date -Is)" "$*" >>"$LOG_DIR/$name.log"
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  local pid=$! start
  for _ in 1 2 3 4 5 6 7 8 9 10; do start=$(proc_start_time "$pid") && [[ -n $start ]] && break; sleep 0.05; done
  [[ -n ${start:-} ]] || die "$name exited at once; see $LOG_DIR/$name.log"
  printf '%s %s\n' "$pid" "$start" >"$RUN_DIR/$name.pid.tmp" && mv "$RUN_DIR/$name.pid.tmp" "$RUN_DIR/$name.pid"
  log "started $name (pid $pid)"
}

# stop_daemon NAME: TERM, then KILL after a grace period; only the recorded process.
stop_daemon() {
  local name=$1 pid
  if pid=$(daemon_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do daemon_pid "$name" >/dev/null || break; sleep 0.1; done
    if daemon_pid "$name" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$RUN_DIR/$name.pid"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS NAME CMD...: polls CMD until it succeeds; fails early if the
# daemon NAME died (pass - for no daemon).
wait_for() {
  local what=$1 timeout=$2 name=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ $name != - ]] && ! daemon_pid "$name" >/dev/null; then
      log "$name died while waiting for $what; last log lines:"; tail -n 20 "$LOG_DIR/$name.log" >&2; return 1
    fi
    (( SECONDS < deadline )) || { log "timed out after ${timeout}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
