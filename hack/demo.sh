#!/usr/bin/env bash
# `make demo`: the example DaskJob end to end on the local cluster. Expects `make cluster-up` (with
# the node) to have run and the operator binary in $DASK_OPERATOR_BIN. Starts the operator for the
# namespace dask-demo (it keeps running; `make cluster-down` stops it), applies examples/daskjob.yaml,
# prints the job's phases as they change and the runner's result, and exits 0 on Successful.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NS=dask-demo
JOB=example
KUBECTL=("$CLUSTER_DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE")
[[ -x ${DASK_OPERATOR_BIN:-} ]] || die "DASK_OPERATOR_BIN must name the operator binary (make demo sets it)"

"${KUBECTL[@]}" apply --server-side --force-conflicts --field-manager=demo -f "$REPO_ROOT/crds/" >/dev/null
"${KUBECTL[@]}" wait --for=condition=Established --timeout=60s -f "$REPO_ROOT/crds/" >/dev/null
"${KUBECTL[@]}" create namespace "$NS" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f - >/dev/null

if ! daemon_pid dask-operator >/dev/null; then
  start_daemon dask-operator env KUBECONFIG="$CLUSTER_DIR/operator.kubeconfig" RUST_LOG=info,kube=warn \
    "$DASK_OPERATOR_BIN" run --namespace "$NS"
fi

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
  (( SECONDS - start < 600 )) || die "the job did not finish within 10 minutes; see $LOG_DIR/dask-operator.log"
  sleep 1
done

echo "--- runner output (kubectl -n $NS logs $JOB-runner) ---"
"${KUBECTL[@]}" -n "$NS" logs "$JOB-runner"
echo "---"
if [[ $phase != Successful ]]; then
  "${KUBECTL[@]}" -n "$NS" get daskjob "$JOB" -o jsonpath='{.status.reason}: {.status.message}{"\n"}'
  exit 1
fi
log "the mean of x + x.T is printed above (about 1.0); the job's cluster is deleted, the runner pod kept"
