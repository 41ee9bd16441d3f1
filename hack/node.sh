#!/usr/bin/env bash
# The local cluster's node `node1` (source it after lib.sh and netns.sh): containerd and runc from
# Debian, kubelet and kube-proxy from the pinned Kubernetes build, CoreDNS from the Go module proxy,
# all inside the cluster's network namespace, and the images built by hack/images/build-images.sh
# imported into containerd. Nothing is ever pulled: containerd has no route out.

NODE_NAME=node1
NODE_DIR=$STATE_DIR/node
KUBELET_DIR=$NODE_DIR/kubelet
CONTAINERD_SOCKET=$RUN_DIR/containerd/containerd.sock
# containerd's content store outlives the cluster, so images are imported once per build.
CONTAINERD_ROOT=$CACHE_ROOT/containerd
CNI_CONF_DIR=$NODE_DIR/cni
CTR=(ctr --address "$CONTAINERD_SOCKET" --namespace k8s.io)

# write_if_changed FILE: writes stdin to FILE unless FILE already has that content (kube-proxy exits
# when its config file is touched).
write_if_changed() {
  local file=$1 tmp="$1.tmp"
  cat >"$tmp"
  if cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv "$tmp" "$file"; CHANGED+=("$file"); fi
}
CHANGED=()

write_node_config() {
  mkdir -p "$NODE_DIR" "$KUBELET_DIR" "$CNI_CONF_DIR" "$RUN_DIR/containerd" "$CONTAINERD_ROOT"
  write_if_changed "$NODE_DIR/containerd.toml" <<EOF
version = 2
root = "$CONTAINERD_ROOT"
state = "$RUN_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCKET"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:local"
  # This machine withholds CAP_SYS_RESOURCE, so no process may lower its oom_score_adj below ours
  # (the kubelet asks -998 for sandboxes): clamp instead of failing every pod.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF_DIR"
EOF
  # Pods get an address on cni0; their default route ends at the bridge, which has no route out.
  write_if_changed "$CNI_CONF_DIR/10-pods.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "pods", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$NODE_DIR/cni-ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  # Pods resolve through CoreDNS on the node address; the kubelet adds the nameserver and search path.
  write_if_changed "$NODE_DIR/pod-resolv.conf" </dev/null
  write_if_changed "$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: $NODE_DIR/pod-resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "200Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 60
rotateCertificates: false
serverTLSBootstrap: false
EOF
  write_if_changed "$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $STATE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
nodePortAddresses: [$NODE_IP/32]
conntrack: {maxPerCore: 0, min: 0}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF
  write_if_changed "$NODE_DIR/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE_DIR/admin.kubeconfig
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
EOF
}

containerd_ready() { "${CTR[@]}" version >/dev/null 2>&1; }

# import_images: the pause and Dask images, built (or taken from the cache) and imported once per
# archive. An archive's file name carries the hash of its inputs; a marker beside containerd's store
# records that it was imported into that store.
import_images() {
  local line name path marker
  mkdir -p "$CONTAINERD_ROOT/dask-operator-imported"
  while IFS= read -r line; do
    name=${line%%=*} path=${line#*=}
    [[ $name == pause || $name == dask ]] || continue
    marker=$CONTAINERD_ROOT/dask-operator-imported/$(basename "$path")
    [[ -e $marker ]] && continue
    log "importing $name image $(basename "$path")"
    "${CTR[@]}" images import "$path" >/dev/null
    touch "$marker"
  done < <("$REPO_ROOT/hack/images/build-images.sh")
}

node_ready() {
  [[ $("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

coredns_ready() { in_netns curl -fsS http://127.0.0.1:8181/ready >/dev/null; }

node_up() {
  local coredns_bin
  coredns_bin=$(coredns_bin_dir)/coredns
  [[ -x $coredns_bin && -x $K8S_BIN/kubelet ]] || die "node binaries missing; run hack/build-binaries.sh"
  mount --make-rshared / # the kubelet's volume mounts must propagate into containers
  write_node_config
  # A running daemon whose configuration changed is restarted (kube-proxy would exit on its own).
  local file
  for file in "${CHANGED[@]}"; do
    case $file in
      */containerd.toml) stop_daemon kubelet; stop_daemon containerd ;;
      */kubelet.yaml) stop_daemon kubelet ;;
      */kube-proxy.yaml) stop_daemon kube-proxy ;;
      */Corefile) stop_daemon coredns ;;
    esac
  done

  if ! daemon_pid containerd >/dev/null; then
    start_daemon containerd nsenter --net="$NETNS_PATH" -- containerd --config "$NODE_DIR/containerd.toml"
  fi
  wait_for "containerd" 30 containerd containerd_ready
  import_images

  if ! daemon_pid kubelet >/dev/null; then
    start_daemon kubelet nsenter --net="$NETNS_PATH" -- "$K8S_BIN/kubelet" \
      --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$STATE_DIR/kubelet.kubeconfig" \
      --root-dir="$KUBELET_DIR" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
  fi
  if ! daemon_pid kube-proxy >/dev/null; then
    start_daemon kube-proxy nsenter --net="$NETNS_PATH" -- "$K8S_BIN/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
  fi
  if ! daemon_pid coredns >/dev/null; then
    start_daemon coredns nsenter --net="$NETNS_PATH" -- "$coredns_bin" -conf "$NODE_DIR/Corefile"
  fi
  wait_for "node $NODE_NAME Ready" 120 kubelet node_ready
  wait_for "CoreDNS /ready" 60 coredns coredns_ready
}

# node_down: stops every container the node runs (through containerd, so their shims exit too),
# then the node's daemons, and unmounts what the kubelet mounted.
node_down() {
  local id
  stop_daemon coredns
  stop_daemon kube-proxy
  stop_daemon kubelet
  if daemon_pid containerd >/dev/null; then
    for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
      "${CTR[@]}" tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
      for _ in $(seq 1 50); do "${CTR[@]}" tasks delete "$id" >/dev/null 2>&1 && break; sleep 0.1; done
    done
    for id in $("${CTR[@]}" containers ls -q 2>/dev/null); do
      "${CTR[@]}" containers delete "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_daemon containerd
  # Pod network namespaces containerd made (named cni-<uuid>) and did not get to remove.
  for id in /run/netns/cni-*; do
    [[ -e $id ]] || continue
    umount "$id" 2>/dev/null || true
    rm -f "$id"
  done
  # Volumes and sandbox namespaces the kubelet and containerd mounted under our folders.
  local mounts
  mounts=$(findmnt -rn -o TARGET | grep -E "^($KUBELET_DIR|$RUN_DIR/containerd|$CONTAINERD_ROOT)/" | sort -r || true)
  for m in $mounts; do umount -l "$m" 2>/dev/null || true; done
}
