#!/usr/bin/env bash
# Restarts the local control plane's storage and API: stops etcd and kube-apiserver, then starts
# them again with hack/cluster-up.sh (idempotent: what runs is left running, the node included). For the chaos tests:
# everything that talks to the API server sees it go away and come back.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

daemon_pid kube-apiserver >/dev/null || die "the local cluster is not running (make cluster-up)"
started=$SECONDS
stop_daemon kube-apiserver
stop_daemon etcd
hack/cluster-up.sh >/dev/null
log "etcd and kube-apiserver restarted in $((SECONDS - started))s"
