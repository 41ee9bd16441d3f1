#!/usr/bin/env bash
# Stops exactly the processes cluster-up.sh started (by recorded PID and start time, never by
# name), the containers the node runs (through containerd), removes the network namespace and the
# cluster's state. Logs stay in .cluster/logs for a post-mortem; images stay in containerd's store
# in the cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/hack/netns.sh"
source "$REPO_ROOT/hack/node.sh"

node_down
# Then the control plane, clients of the API server first, etcd last, and the relay.
for c in dask-operator kube-scheduler kube-controller-manager kube-apiserver etcd relay relay-inner; do
  stop_daemon "$c"
done
netns_down
rm -rf "$RUN_DIR" "$STATE_DIR" "$PKI_DIR" "$KUBECONFIG_FILE" "$CLUSTER_DIR/operator.kubeconfig" "$CLUSTER_DIR/bin"
log "cluster down"
