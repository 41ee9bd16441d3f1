#!/usr/bin/env bash
# `make demo`: the example DaskJob end to end on the local cluster, through the operator installed
# the way a platform team installs it: the Helm chart (charts/dask-operator), release `dask-operator`
# in namespace `dask-operator`, watching every namespace. Expects `make cluster-up` (with the node) to
# have run and the release binary in $DASK_OPERATOR_BIN; builds the operator image from it and imports
# it into the node (hack/images/import-operator-image.sh). Then applies examples/daskjob.yaml in
# namespace dask-demo, prints the job's phases as they change and the runner's result, and exits 0
# on Successful. The release stays installed (`make cluster-down` ends it with the cluster).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NS=dask-demo
JOB=example
RELEASE=dask-operator
RELEASE_NS=dask-operator
KUBECTL=("$CLUSTER_DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE")
[[ -x ${DASK_OPERATOR_BIN:-} ]] || die "DASK_OPERATOR_BIN must name the release binary (make demo sets it)"
[[ -x $HELM4 ]] || die "helm is missing at $HELM4; run hack/build-binaries.sh"

# An operator the demo of an earlier version ran on the host would compete with the in-cluster one.
stop_daemon dask-operator

image=$("$REPO_ROOT/hack/images/import-operator-image.sh" "$DASK_OPERATOR_BIN" | sed -n 's/^image=//p')
[[ -n $image ]] || die "no operator image"
log "installing the chart: release $RELEASE in namespace $RELEASE_NS, image $image"
start=$SECONDS
# --take-ownership: the CRDs may exist already (applied with kubectl by the tests); the release then
# owns and upgrades them.
"$HELM4" upgrade --install "$RELEASE" "$REPO_ROOT/charts/dask-operator" \
  --kubeconfig "$KUBECONFIG_FILE" --namespace "$RELEASE_NS" --create-namespace \
  --take-ownership --force-conflicts \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
  --wait --timeout 180s >/dev/null
log "operator ready after $((SECONDS - start))s: $("${KUBECTL[@]}" -n "$RELEASE_NS" get pods \
  -l app.kubernetes.io/name=dask-operator -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}')"

"${KUBECTL[@]}" create namespace "$NS" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f - >/dev/null
# A job from an earlier demo goes first, with its runner pod.
"${KUBECTL[@]}" -n "$NS" delete daskjob "$JOB" --ignore-not-found --wait=true --timeout=120s >/dev/null
"${KUBECTL[@]}" -n "$NS" wait --for=delete pod/"$JOB-runner" --timeout=120s >/dev/null 2>&1 || true

log "applying examples/daskjob.yaml in namespace $NS"
"${KUBECTL[@]}" -n "$NS" apply -f "$REPO_ROOT/examples/daskjob.yaml" >/dev/null
start=$SECONDS last=""
while :; do
  phase=$("${KUBECTL[@]}" -n "$NS" get daskjob "$JOB" -o jsonpath='{.status.jobStatus}' 2>/dev/null || true)
  if [[ $phase != "$last" ]]; then
    log "DaskJob $JOB: ${phase:-<no status yet>} (after $((SECONDS - start))s)"
    last=$phase
  fi
  [[ $phase == Successful || $phase == Failed ]] && break
  (( SECONDS - start < 600 )) || die "the job did not finish within 10 minutes; see kubectl -n $RELEASE_NS logs deploy/$RELEASE"
  sleep 1
done

echo "--- runner output (kubectl -n $NS logs $JOB-runner) ---"
"${KUBECTL[@]}" -n "$NS" logs "$JOB-runner"
echo "---"
if [[ $phase != Successful ]]; then
  "${KUBECTL[@]}" -n "$NS" get daskjob "$JOB" -o jsonpath='{.status.reason}: {.status.message}{"\n"}'
  exit 1
fi
log "status.result: $("${KUBECTL[@]}" -n "$NS" get daskjob "$JOB" -o jsonpath='{.status.result}')"
log "the mean of x + x.T is printed above (about 1.0); the job's cluster is deleted, the runner pod kept"
log "the operator runs in the cluster: kubectl -n $RELEASE_NS logs deploy/$RELEASE"
