#!/usr/bin/env bash
# Brings the local Kubernetes control plane up on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler, each a process recorded by PID in .cluster/run.
#
# Idempotent: components that are already running (the recorded process is alive) are kept,
# stale PID files are ignored, and state that cannot be trusted after a crash is rebuilt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_BIN=$(k8s_bin_dir)
ETCD_BIN=$(etcd_bin_dir)
[[ -x $K8S_BIN/kube-apiserver && -x $ETCD_BIN/etcd ]] || die "binaries missing; run hack/build-binaries.sh (make binaries)"
source "$REPO_ROOT/hack/pki.sh"

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
started=$SECONDS
mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE_DIR" "$CLUSTER_DIR/bin"

# A PKI is complete only once it was moved into place; if it has to be made anew, every running
# component and the etcd data signed with the old keys are discarded.
pki_complete() {
  local f
  for f in ca.crt apiserver.crt admin.crt controller-manager.crt scheduler.crt dask-operator.crt \
    apiserver-kubelet-client.crt sa.key sa.pub; do [[ -f $PKI_DIR/$f ]] || return 1; done
}
if ! pki_complete; then
  for c in "${COMPONENTS[@]}"; do stop_daemon "$c"; done
  rm -rf "$PKI_DIR" "$STATE_DIR/etcd"
  log "creating certificates in $PKI_DIR"
  make_pki "$PKI_DIR"
fi

server=https://127.0.0.1:$APISERVER_PORT
write_kubeconfig "$KUBECONFIG_FILE" "$server" "$PKI_DIR/ca.crt" "$PKI_DIR/admin.crt" "$PKI_DIR/admin.key"
write_kubeconfig "$STATE_DIR/controller-manager.kubeconfig" "$server" "$PKI_DIR/ca.crt" \
  "$PKI_DIR/controller-manager.crt" "$PKI_DIR/controller-manager.key"
write_kubeconfig "$STATE_DIR/scheduler.kubeconfig" "$server" "$PKI_DIR/ca.crt" \
  "$PKI_DIR/scheduler.crt" "$PKI_DIR/scheduler.key"
# The operator's own identity, with the operator's RBAC only (applied below).
write_kubeconfig "$CLUSTER_DIR/operator.kubeconfig" "$server" "$PKI_DIR/ca.crt" \
  "$PKI_DIR/dask-operator.crt" "$PKI_DIR/dask-operator.key"
ln -sfn "$K8S_BIN/kubectl" "$CLUSTER_DIR/bin/kubectl"
KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE")

# ensure_port NAME PORT: a port must be free unless our own running component holds it.
ensure_port() {
  port_free "$2" || die "127.0.0.1:$2 (for $1) is used by a process that is not ours; set ${3:-its port variable}"
}

etcd_healthy() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
start_etcd() {
  ensure_port etcd "$ETCD_PORT" ETCD_PORT && ensure_port etcd "$ETCD_PEER_PORT" ETCD_PEER_PORT
  start_daemon etcd "$ETCD_BIN/etcd" --name local --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes=4294967296 --log-level=warn
}
if ! daemon_pid etcd >/dev/null; then
  start_etcd
  if ! wait_for "etcd /health" 30 etcd etcd_healthy; then
    # A data dir left half-written by a killed machine can keep etcd from starting: the local
    # cluster's contents are disposable, so start again from an empty one.
    log "etcd did not become healthy; discarding its data dir and starting again"
    stop_daemon etcd; rm -rf "$STATE_DIR/etcd"
    start_etcd
    wait_for "etcd /health" 30 etcd etcd_healthy
  fi
fi
wait_for "etcd /health" 30 etcd etcd_healthy

if ! daemon_pid kube-apiserver >/dev/null; then
  # The controller-manager exits soon after its API server goes away: restart both clients with it.
  stop_daemon kube-controller-manager; stop_daemon kube-scheduler
  ensure_port kube-apiserver "$APISERVER_PORT" APISERVER_PORT
  start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --endpoint-reconciler-type=none \
    --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI_DIR/sa.pub" --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --profiling=false
fi
readyz() { [[ $("${KUBECTL[@]}" get --raw /readyz 2>/dev/null) == ok ]]; }
wait_for "kube-apiserver /readyz" 120 kube-apiserver readyz

if ! daemon_pid kube-controller-manager >/dev/null; then
  ensure_port kube-controller-manager "$CONTROLLER_MANAGER_PORT" CONTROLLER_MANAGER_PORT
  start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --controllers='*' --profiling=false
fi

if ! daemon_pid kube-scheduler >/dev/null; then
  ensure_port kube-scheduler "$SCHEDULER_PORT" SCHEDULER_PORT
  start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false --profiling=false
fi

# The ServiceAccount controller creates `default` in every namespace once it runs.
default_sa() { "${KUBECTL[@]}" -n default get serviceaccount default; }
wait_for "ServiceAccount default/default" 60 kube-controller-manager default_sa
"${KUBECTL[@]}" apply --server-side --field-manager=cluster-up -f "$REPO_ROOT/deploy/rbac.yaml" \
  -f "$REPO_ROOT/hack/local-operator.yaml" >/dev/null
daemon_pid kube-scheduler >/dev/null || die "kube-scheduler is not running; see $LOG_DIR/kube-scheduler.log"

log "cluster up in $((SECONDS - started))s: KUBECONFIG=$KUBECONFIG_FILE, kubectl at $CLUSTER_DIR/bin/kubectl"
