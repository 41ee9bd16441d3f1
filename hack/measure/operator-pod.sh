#!/usr/bin/env bash
# Figures for the in-cluster operator (no assertions: `make measure-operator`): time from `helm install`
# to a ready pod, the operator process's RSS at rest and with N DaskJobs (default 100) in a namespace
# whose pods are never scheduled (so the figure is the operator's bookkeeping, not Dask's), and the
# image size. Needs the local cluster (make cluster-up) and the release binary in $DASK_OPERATOR_BIN.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

N=${N:-100}
KUBECTL=("$CLUSTER_DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE")
REL_NS=measure-operator JOBS_NS=measure-jobs
[[ -x ${DASK_OPERATOR_BIN:-} ]] || die "DASK_OPERATOR_BIN must name the release binary"

out=$("$REPO_ROOT/hack/images/import-operator-image.sh" "$DASK_OPERATOR_BIN")
image=$(sed -n 's/^image=//p' <<<"$out") archive=$(sed -n 's/^archive=//p' <<<"$out")

cleanup() {
  "$HELM4" uninstall dask-operator --kubeconfig "$KUBECONFIG_FILE" -n "$REL_NS" --wait >/dev/null 2>&1 || true
  "${KUBECTL[@]}" delete namespace "$REL_NS" "$JOBS_NS" --wait=false --ignore-not-found >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
"${KUBECTL[@]}" wait --for=delete namespace/"$REL_NS" namespace/"$JOBS_NS" --timeout=120s >/dev/null 2>&1 || true
"${KUBECTL[@]}" create namespace "$REL_NS" >/dev/null
"${KUBECTL[@]}" create namespace "$JOBS_NS" >/dev/null
"${KUBECTL[@]}" annotate namespace "$JOBS_NS" scheduler.alpha.kubernetes.io/node-selector=dask-operator.dask.org/bench=no-node >/dev/null

start=$(date +%s%N)
"$HELM4" install dask-operator "$REPO_ROOT/charts/dask-operator" --kubeconfig "$KUBECONFIG_FILE" -n "$REL_NS" \
  --set crds.install=false --set rbac.mode=namespaced --set "rbac.namespaces={$JOBS_NS}" \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --wait --timeout 120s >/dev/null
ready=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN {print (b - a) / 1e9}')

pod_uid=$("${KUBECTL[@]}" -n "$REL_NS" get pods -l app.kubernetes.io/name=dask-operator -o jsonpath='{.items[0].metadata.uid}')
pid=""
for p in /proc/[0-9]*; do
  if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q '^/usr/local/bin/dask-operator run' \
     && grep -q "${pod_uid//-/_}\|$pod_uid" "$p/cgroup" 2>/dev/null; then pid=${p#/proc/}; fi
done
[[ -n $pid ]] || die "operator process not found"
# VmRSS counts the mapped binary's pages too; RssAnon is the heap and stacks.
rss() { awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} END {printf "%.1f (anonymous %.1f)", r/1024, a/1024}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$pid/status"; }
sleep 5
at_rest=$(rss)

job=$(sed -n '1,/^---/p' "$REPO_ROOT/tests/fixtures/simplejob.yaml")
for i in $(seq 1 "$N"); do
  sed -e "s/name: simple-job\$/name: job-$i/" -e "s/simple-job/job-$i/g" <<<"$job"
  echo "---"
done | "${KUBECTL[@]}" -n "$JOBS_NS" apply -f - >/dev/null
deadline=$((SECONDS + 300))
until [[ $("${KUBECTL[@]}" -n "$JOBS_NS" get daskjobs -o jsonpath='{range .items[*]}{.status.jobStatus}{"\n"}{end}' | grep -c ClusterCreated) -ge $N ]]; do
  (( SECONDS < deadline )) || die "not all $N jobs reached ClusterCreated in 300s"
  sleep 1
done
sleep 10
with_jobs=$(rss) peak=$(hwm)

printf '| figure | value |\n| --- | --- |\n'
printf '| image archive (uncompressed layer) | %s MB |\n' "$(( $(stat -c %s "$archive") / 1000000 ))"
printf '| helm install to ready pod | %.1f s |\n' "$ready"
printf '| operator RSS at rest | %s MiB |\n' "$at_rest"
printf '| operator RSS with %s DaskJobs (all ClusterCreated) | %s MiB (peak %s MiB) |\n' "$N" "$with_jobs" "$peak"
