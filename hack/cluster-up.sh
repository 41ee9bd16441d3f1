#!/usr/bin/env bash
# Brings the local Kubernetes cluster up: a network namespace (hack/netns.sh) holding etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and a real node (containerd, kubelet,
# kube-proxy, CoreDNS; hack/node.sh), and a relay that serves the API server on host 127.0.0.1.
# Each process is recorded by PID in .cluster/run.
#
# Idempotent: components that are already running (the recorded process is alive) are kept,
# stale PID files are ignored, and state that cannot be trusted after a crash is rebuilt.
# NODE=0 brings up the control plane only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/hack/pki.sh"
source "$REPO_ROOT/hack/netns.sh"

K8S_BIN=$(k8s_bin_dir)
ETCD_BIN=$(etcd_bin_dir)
[[ -x $K8S_BIN/kube-apiserver && -x $ETCD_BIN/etcd ]] || die "binaries missing; run hack/build-binaries.sh (make binaries)"

CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler)
started=$SECONDS
mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE_DIR" "$CLUSTER_DIR/bin"

# A PKI is complete only once it was moved into place; if it has to be made anew, every running
# component and the etcd data signed with the old keys are discarded.
pki_complete() {
  local f
  for f in ca.crt apiserver.crt admin.crt controller-manager.crt scheduler.crt dask-operator.crt \
    kubelet.crt kube-proxy.crt apiserver-kubelet-client.crt sa.key sa.pub; do
    [[ -f $PKI_DIR/$f ]] || return 1
  done
}
if ! pki_complete; then
  "$REPO_ROOT/hack/cluster-down.sh" >/dev/null 2>&1 || true
  mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE_DIR" "$CLUSTER_DIR/bin"
  log "creating certificates in $PKI_DIR"
  make_pki "$PKI_DIR"
fi

# In the namespace, components reach the API server on its loopback; the host through the relay.
inner=https://127.0.0.1:6443
write_kubeconfig "$KUBECONFIG_FILE" "https://127.0.0.1:$APISERVER_PORT" "$PKI_DIR/ca.crt" "$PKI_DIR/admin.crt" "$PKI_DIR/admin.key"
write_kubeconfig "$STATE_DIR/admin.kubeconfig" "$inner" "$PKI_DIR/ca.crt" "$PKI_DIR/admin.crt" "$PKI_DIR/admin.key"
for who in controller-manager scheduler kubelet kube-proxy; do
  write_kubeconfig "$STATE_DIR/$who.kubeconfig" "$inner" "$PKI_DIR/ca.crt" "$PKI_DIR/$who.crt" "$PKI_DIR/$who.key"
done
# The operator's own identity, with the operator's RBAC only (applied below).
write_kubeconfig "$CLUSTER_DIR/operator.kubeconfig" "https://127.0.0.1:$APISERVER_PORT" "$PKI_DIR/ca.crt" \
  "$PKI_DIR/dask-operator.crt" "$PKI_DIR/dask-operator.key"
ln -sfn "$K8S_BIN/kubectl" "$CLUSTER_DIR/bin/kubectl"
KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE")

netns_up

# --- the relay: host 127.0.0.1:$APISERVER_PORT -> unix socket -> namespace 127.0.0.1:6443 ---
if ! daemon_pid relay-inner >/dev/null; then
  rm -f "$RELAY_SOCKET"
  start_daemon relay-inner nsenter --net="$NETNS_PATH" -- \
    socat "UNIX-LISTEN:$RELAY_SOCKET,fork,mode=600" TCP:127.0.0.1:6443
fi
if ! daemon_pid relay >/dev/null; then
  port_free "$APISERVER_PORT" || die "127.0.0.1:$APISERVER_PORT is used by a process that is not ours; set APISERVER_PORT"
  start_daemon relay socat "TCP-LISTEN:$APISERVER_PORT,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$RELAY_SOCKET"
fi

# --- etcd ---
etcd_healthy() { in_netns curl -fsS "http://127.0.0.1:2379/health" | grep -q '"health":"true"'; }
start_etcd() {
  start_daemon etcd nsenter --net="$NETNS_PATH" -- "$ETCD_BIN/etcd" --name local --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster local=http://127.0.0.1:2380 \
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
  fi
fi
wait_for "etcd /health" 30 etcd etcd_healthy

# --- kube-apiserver ---
if ! daemon_pid kube-apiserver >/dev/null; then
  # The controller-manager exits soon after its API server goes away: restart it and the scheduler
  # with it. The node's daemons (kubelet, kube-proxy, CoreDNS) reconnect on their own.
  for c in kube-controller-manager kube-scheduler; do stop_daemon "$c"; done
  # OwnerReferencesPermissionEnforcement (on in OpenShift, for one): setting blockOwnerDeletion on an
  # owner reference needs update on the owner's finalizers, and changing the owner references of an
  # object needs delete on it; the tests run the operator as itself, so its RBAC is checked for that.
  start_daemon kube-apiserver nsenter --net="$NETNS_PATH" -- "$K8S_BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction,PodNodeSelector,OwnerReferencesPermissionEnforcement \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI_DIR/sa.pub" --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --profiling=false
fi
readyz() { [[ $("${KUBECTL[@]}" get --raw /readyz 2>/dev/null) == ok ]]; }
wait_for "kube-apiserver /readyz" 120 kube-apiserver readyz

# --- kube-controller-manager, kube-scheduler ---
if ! daemon_pid kube-controller-manager >/dev/null; then
  start_daemon kube-controller-manager nsenter --net="$NETNS_PATH" -- "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --controllers='*' --profiling=false
fi
if ! daemon_pid kube-scheduler >/dev/null; then
  start_daemon kube-scheduler nsenter --net="$NETNS_PATH" -- "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false
fi

# The ServiceAccount controller creates `default` in every namespace once it runs.
default_sa() { "${KUBECTL[@]}" -n default get serviceaccount default; }
wait_for "ServiceAccount default/default" 60 kube-controller-manager default_sa
"${KUBECTL[@]}" apply --server-side --field-manager=cluster-up -f "$REPO_ROOT/deploy/rbac.yaml" \
  -f "$REPO_ROOT/hack/local-operator.yaml" >/dev/null
daemon_pid kube-scheduler >/dev/null || die "kube-scheduler is not running; see $LOG_DIR/kube-scheduler.log"
log "control plane up in $((SECONDS - started))s"

if [[ ${NODE:-1} == 1 ]]; then
  source "$REPO_ROOT/hack/node.sh"
  node_up
fi

log "cluster up in $((SECONDS - started))s: KUBECONFIG=$KUBECONFIG_FILE, kubectl at $CLUSTER_DIR/bin/kubectl"
