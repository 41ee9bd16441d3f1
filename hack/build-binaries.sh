#!/usr/bin/env bash
# Builds the pinned Kubernetes and etcd binaries with `go build` from the helper modules in
# hack/go/. A set is built only when its cache folder (keyed by version) is missing or incomplete.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

build_set() { # build_set OUT_DIR HELPER_DIR LDFLAGS PKG...  (a single PKG is named after OUT_DIR's set)
  local out=$1 helper=$2 ldflags=$3; shift 3
  local tmp="$out.tmp.$$" dest
  rm -rf "$tmp" && mkdir -p "$tmp"
  dest="$tmp/"; (( $# == 1 )) && dest="$tmp/$BUILD_NAME"
  (cd "$helper" && go build -mod=mod -trimpath -ldflags "$ldflags" -o "$dest" "$@")
  rm -rf "$out" && mv "$tmp" "$out"   # appears complete or not at all
}

k8s_dir=$(k8s_bin_dir)
missing=0
for c in "${K8S_CMDS[@]}"; do [[ -x $k8s_dir/$c ]] || missing=1; done
if (( missing )); then
  log "building Kubernetes $K8S_VERSION into $k8s_dir (cold build: tens of minutes)"
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ld="-s -w"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X '$p.gitVersion=$K8S_VERSION' -X '$p.gitMajor=1' -X '$p.gitMinor=$minor'"
    ld+=" -X '$p.gitTreeState=clean' -X '$p.gitCommit=$K8S_VERSION' -X '$p.buildDate=1970-01-01T00:00:00Z'"
  done
  pkgs=(); for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  start=$SECONDS
  build_set "$k8s_dir" "$REPO_ROOT/hack/go/k8s" "$ld" "${pkgs[@]}"
  log "Kubernetes built in $((SECONDS - start))s"
fi

etcd_dir=$(etcd_bin_dir)
if [[ ! -x $etcd_dir/etcd ]]; then
  log "building etcd $ETCD_VERSION into $etcd_dir"
  start=$SECONDS
  BUILD_NAME=etcd build_set "$etcd_dir" "$REPO_ROOT/hack/go/etcd" "-s -w" go.etcd.io/etcd/server/v3
  log "etcd built in $((SECONDS - start))s"
fi

coredns_dir=$(coredns_bin_dir)
if [[ ! -x $coredns_dir/coredns ]]; then
  log "building CoreDNS $COREDNS_VERSION into $coredns_dir"
  start=$SECONDS
  BUILD_NAME=coredns build_set "$coredns_dir" "$REPO_ROOT/hack/go/coredns" "-s -w" github.com/coredns/coredns
  log "CoreDNS built in $((SECONDS - start))s"
fi

# (Read the whole output first: `grep -q` closing the pipe early would fail it under pipefail.)
kubectl_version=$("$k8s_dir/kubectl" version --client 2>/dev/null || true)
[[ $kubectl_version == *"Client Version: $K8S_VERSION"* ]] || die "kubectl does not report $K8S_VERSION"
etcd_version=$("$etcd_dir/etcd" --version)
[[ $etcd_version == *"etcd Version: ${ETCD_VERSION#v}"* ]] || die "etcd does not report $ETCD_VERSION: $etcd_version"
coredns_version=$("$coredns_dir/coredns" -version)
[[ $coredns_version == *"CoreDNS-${COREDNS_VERSION#v}"* ]] || die "coredns does not report $COREDNS_VERSION: $coredns_version"
