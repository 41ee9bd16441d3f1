#!/usr/bin/env bash
# Builds the pinned Kubernetes, etcd, CoreDNS and Helm 3/4 binaries with `go build` from the helper
# modules in hack/go/. A set is built only when its cache folder (keyed by version) is missing or
# incomplete.
#
#   hack/build-binaries.sh [SET...]   SET: kubernetes etcd coredns helm3 helm4 (default: all)
#
# Naming sets builds and checks only those (e.g. `hack/build-binaries.sh helm3 helm4` for the chart
# tests, which need no cluster binaries).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_SETS=(kubernetes etcd coredns helm3 helm4)
SETS=("$@"); (( $# )) || SETS=("${ALL_SETS[@]}")
for s in "${SETS[@]}"; do
  [[ " ${ALL_SETS[*]} " == *" $s "* ]] || die "unknown set '$s' (one of: ${ALL_SETS[*]})"
done
want() { [[ " ${SETS[*]} " == *" $1 "* ]]; }

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
if want kubernetes && (( missing )); then
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
if want etcd && [[ ! -x $etcd_dir/etcd ]]; then
  log "building etcd $ETCD_VERSION into $etcd_dir"
  start=$SECONDS
  BUILD_NAME=etcd build_set "$etcd_dir" "$REPO_ROOT/hack/go/etcd" "-s -w" go.etcd.io/etcd/server/v3
  log "etcd built in $((SECONDS - start))s"
fi

coredns_dir=$(coredns_bin_dir)
if want coredns && [[ ! -x $coredns_dir/coredns ]]; then
  log "building CoreDNS $COREDNS_VERSION into $coredns_dir"
  start=$SECONDS
  BUILD_NAME=coredns build_set "$coredns_dir" "$REPO_ROOT/hack/go/coredns" "-s -w" github.com/coredns/coredns
  log "CoreDNS built in $((SECONDS - start))s"
fi

# Helm: `helm version` reports internal/version.version, which defaults to the bare minor ("v3.22")
# and is set by Helm's Makefile from the git tag; here from the pin. metadata keeps its empty default
# (a tagged release: no "+unreleased"); the git commit is not known from the module proxy and stays
# empty.
# Helm 3 also takes the Kubernetes version it assumes for `helm template` / `helm lint` (the
# .Capabilities.KubeVersion default, checked against a chart's kubeVersion) from ldflags, derived by
# its Makefile from the client-go it is built with; without them it would claim v1.20. Helm 4 finds
# client-go's version in the binary's build info at run time.
helm_ldflags() { # helm_ldflags MAJOR VERSION HELPER_DIR
  local major=$1 version=$2 helper=$3 client_go k8s_major k8s_minor ld="-s -w" p
  p=helm.sh/helm/v$major/internal/version
  ld+=" -X $p.version=$version -X $p.gitTreeState=clean"
  if (( major == 3 )); then
    client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$helper/go.mod")   # v0.MINOR.PATCH
    [[ $client_go =~ ^v0\.([0-9]+)\. ]] || die "no k8s.io/client-go v0.x requirement in $helper/go.mod"
    k8s_major=1 k8s_minor=${BASH_REMATCH[1]}
    for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ld+=" -X $p.k8sVersionMajor=$k8s_major -X $p.k8sVersionMinor=$k8s_minor"
    done
  fi
  printf '%s' "$ld"
}

# build_helm MAJOR VERSION DIR: Helm MAJOR (3 or 4) at VERSION into DIR, from hack/go/helmMAJOR.
build_helm() {
  local major=$1 version=$2 dir=$3 helper="$REPO_ROOT/hack/go/helm$1" start
  want "helm$major" && [[ ! -x $dir/helm ]] || return 0
  log "building Helm $version into $dir"
  start=$SECONDS
  BUILD_NAME=helm build_set "$dir" "$helper" "$(helm_ldflags "$major" "$version" "$helper")" \
    "helm.sh/helm/v$major/cmd/helm"
  log "Helm $version built in $((SECONDS - start))s"
}
helm3_dir=$(helm3_bin_dir)
helm4_dir=$(helm4_bin_dir)
build_helm 3 "$HELM3_VERSION" "$helm3_dir"
build_helm 4 "$HELM4_VERSION" "$helm4_dir"

# (Read the whole output first: `grep -q` closing the pipe early would fail it under pipefail.)
if want kubernetes; then
  kubectl_version=$("$k8s_dir/kubectl" version --client 2>/dev/null || true)
  [[ $kubectl_version == *"Client Version: $K8S_VERSION"* ]] || die "kubectl does not report $K8S_VERSION"
fi
if want etcd; then
  etcd_version=$("$etcd_dir/etcd" --version)
  [[ $etcd_version == *"etcd Version: ${ETCD_VERSION#v}"* ]] || die "etcd does not report $ETCD_VERSION: $etcd_version"
fi
if want coredns; then
  coredns_version=$("$coredns_dir/coredns" -version)
  [[ $coredns_version == *"CoreDNS-${COREDNS_VERSION#v}"* ]] || die "coredns does not report $COREDNS_VERSION: $coredns_version"
fi
check_helm() { # check_helm BINARY VERSION
  local out
  out=$("$1" version --template '{{.Version}}' 2>&1 || true)
  [[ $out == "$2" ]] || die "$1 does not report $2: $out"
}
if want helm3; then check_helm "$helm3_dir/helm" "$HELM3_VERSION"; fi
if want helm4; then check_helm "$helm4_dir/helm" "$HELM4_VERSION"; fi
