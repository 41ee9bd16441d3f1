#!/usr/bin/env bash
# The local cluster's network namespace (source it; used by cluster-up.sh and cluster-down.sh).
#
# Every cluster process runs inside it: etcd, the control plane, containerd, kubelet, kube-proxy and
# CoreDNS. The pod range 10.244.0.0/24 (bridge cni0, gateway 10.244.0.1) and the service range
# 10.96.0.0/16 exist only in there, and the namespace has no route out, so pods cannot reach anything
# but each other and the node. The host reaches the API server through a relay: a socat listening on
# host 127.0.0.1:$APISERVER_PORT forwards through a unix socket to a socat inside the namespace, which
# connects to the API server on the namespace's own loopback.
#
# Processes enter it with `nsenter --net=` (not `ip netns exec`, which remounts /sys and would hide
# the cgroup hierarchy from kubelet and containerd).

NETNS_NAME=${NETNS_NAME:-dask-operator}
NETNS_PATH=/run/netns/$NETNS_NAME
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
RELAY_SOCKET=$RUN_DIR/apiserver.sock

# in_netns CMD...: runs CMD in the cluster's network namespace (exec, no fork: $! is CMD's PID).
in_netns() { nsenter --net="$NETNS_PATH" -- "$@"; }

# A marker in this checkout's run folder records that the namespace is ours: another checkout's
# cluster (same default name) is never entered or removed.
NETNS_MARKER=$RUN_DIR/netns.$NETNS_NAME

# Who made the namespace: the checkout's cluster folder, recorded next to it under /run so that another
# checkout can name (and, when asked to, stop) the cluster that holds it.
NETNS_OWNER_FILE=/run/dask-operator/netns.$NETNS_NAME.owner

# netns_take_over: stops the cluster of the checkout that made the namespace, through that checkout's
# own cluster-down.sh when it is still there, else by stopping what runs in the namespace. Only with
# DASK_CLUSTER_TAKEOVER=1 (CI sets it: a fresh clone on a machine where a developer's cluster was left up).
netns_take_over() {
  local owner pids
  owner=$(cat "$NETNS_OWNER_FILE" 2>/dev/null || true)
  log "DASK_CLUSTER_TAKEOVER=1: stopping the cluster that holds network namespace $NETNS_NAME (${owner:-made by an unknown checkout})"
  if [[ -n $owner && -x ${owner%/.cluster}/hack/cluster-down.sh ]]; then
    CLUSTER_DIR=$owner NETNS_NAME=$NETNS_NAME "${owner%/.cluster}/hack/cluster-down.sh" || true
  fi
  if [[ -e $NETNS_PATH ]]; then
    pids=$(ip netns pids "$NETNS_NAME" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -z $pids ]] || { kill -TERM $pids 2>/dev/null || true; sleep 2; kill -KILL $pids 2>/dev/null || true; }
    ip netns del "$NETNS_NAME" 2>/dev/null || umount "$NETNS_PATH" 2>/dev/null || true
    rm -f "$NETNS_PATH"
  fi
  # That cluster's API server relay (a socat on the host side) goes too.
  local relay
  relay=$(ss -Hltnp "sport = :$APISERVER_PORT" 2>/dev/null | grep -o '"socat",pid=[0-9]*' | grep -o '[0-9]*$' || true)
  # shellcheck disable=SC2086
  [[ -z $relay ]] || kill -TERM $relay 2>/dev/null || true
  rm -f "$NETNS_OWNER_FILE"
}

netns_up() {
  # A namespace left behind by a checkout that is gone (no process runs in it) is removed; one that
  # still holds processes belongs to a running cluster and is left alone unless DASK_CLUSTER_TAKEOVER=1.
  if [[ -e $NETNS_PATH && ! -e $NETNS_MARKER && -z $(ip netns pids "$NETNS_NAME" 2>/dev/null) ]]; then
    log "removing network namespace $NETNS_NAME left behind by another checkout (no process runs in it)"
    ip netns del "$NETNS_NAME" 2>/dev/null || umount "$NETNS_PATH" 2>/dev/null || true
    rm -f "$NETNS_PATH"
  fi
  if [[ -e $NETNS_PATH && ! -e $NETNS_MARKER && ${DASK_CLUSTER_TAKEOVER:-0} == 1 ]]; then
    netns_take_over
  fi
  if [[ -e $NETNS_PATH && ! -e $NETNS_MARKER ]]; then
    die "network namespace $NETNS_NAME exists but was made by another checkout ($(cat "$NETNS_OWNER_FILE" 2>/dev/null || echo unknown)); stop that cluster (make cluster-down there), set NETNS_NAME, or set DASK_CLUSTER_TAKEOVER=1"
  fi
  if [[ ! -e $NETNS_PATH ]]; then
    log "creating network namespace $NETNS_NAME"
    ip netns add "$NETNS_NAME"
    mkdir -p "$RUN_DIR" "${NETNS_OWNER_FILE%/*}" && touch "$NETNS_MARKER"
    printf '%s\n' "$CLUSTER_DIR" >"$NETNS_OWNER_FILE"
  fi
  in_netns ip link set lo up
  if ! in_netns ip link show cni0 >/dev/null 2>&1; then
    in_netns ip link add cni0 type bridge
  fi
  in_netns ip addr replace "$NODE_IP/24" dev cni0
  in_netns ip link set cni0 up
  # ClusterIPs for processes in the namespace itself (kube-proxy's rules DNAT them); there is no default route.
  in_netns ip route replace "$SERVICE_CIDR" dev cni0
  in_netns sysctl -qw net.ipv4.ip_forward=1
  in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1
  in_netns sysctl -qw net.ipv4.conf.all.route_localnet=1
}

netns_down() {
  [[ -e $NETNS_PATH && -e $NETNS_MARKER ]] || return 0
  ip netns del "$NETNS_NAME" 2>/dev/null || umount "$NETNS_PATH" 2>/dev/null || true
  rm -f "$NETNS_PATH" "$NETNS_MARKER" "$NETNS_OWNER_FILE"
}
