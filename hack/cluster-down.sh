#!/usr/bin/env bash
# Stops exactly the processes cluster-up.sh started (by recorded PID and start time, never by
# name) and removes their state. Logs stay in .cluster/logs for a post-mortem.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Reverse start order: clients of the API server first, etcd last.
for c in dask-operator kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop_daemon "$c"
done
rm -rf "$RUN_DIR" "$STATE_DIR" "$PKI_DIR" "$KUBECONFIG_FILE" "$CLUSTER_DIR/operator.kubeconfig" "$CLUSTER_DIR/bin"
log "cluster down"
