"""The operator as a platform team runs it: installed with the chart on the local cluster, in its own
namespace, running real DaskJobs on the real node."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from conftest import (CHART, REPO, example_job, job_status, kubectl, kubectl_json, metric_value, metrics_of,
                      wait_for, wait_job_done)

MEAN = re.compile(r"^\s*(\d+\.\d+)\s*$", re.M)


def assert_mean_in_log(namespace: str, pod: str) -> float:
    log = kubectl("-n", namespace, "logs", pod).stdout
    means = [float(m) for m in MEAN.findall(log)]
    assert means and abs(means[-1] - 1.0) < 0.01, f"no mean close to 1.0 in the runner's log:\n{log}"
    return means[-1]


def host_process_of(pod: dict) -> int:
    """The PID (on this host) of the operator process in `pod`: the node runs on this machine, and the
    kubelet's cgroupfs driver puts every container under a cgroup path with the pod's UID."""
    uid = pod["metadata"]["uid"].replace("-", "_")
    uid_dashed = pod["metadata"]["uid"]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cgroup = (proc / "cgroup").read_text()
        except OSError:
            continue
        if cmdline[:2] == [b"/usr/local/bin/dask-operator", b"run"] and (uid in cgroup or uid_dashed in cgroup):
            return int(proc.name)
    raise AssertionError(f"no dask-operator process of pod {pod['metadata']['name']} on this host")


def test_cluster_wide_release_runs_the_example_job(release, namespace):
    # Cluster-wide RBAC (the chart's default); the watch is narrowed to the test's namespace with an
    # extra flag so that this release never touches another test's objects.
    start = time.monotonic()
    release.install(f"extraArgs[0]=--namespaces={namespace}")
    ready_after = time.monotonic() - start
    print(f"helm install to ready: {ready_after:.1f}s")

    [pod] = release.pods()
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "dask-operator"
    [container] = pod["spec"]["containers"]
    assert [p["name"] for p in container["ports"]] == ["http"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    psc = pod["spec"]["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
    # What really runs: not root, and / mounted read-only.
    pid = host_process_of(pod)
    status = Path(f"/proc/{pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
    assert uids and uids.group(1) == uids.group(2) == "65532", status
    root = [line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/"]
    assert root and "ro" in root[-1].split()[5].split(","), root

    kubectl("-n", namespace, "apply", "-f", "-", input=example_job("example"))
    status = wait_job_done(namespace, "example")
    assert status["jobStatus"] == "Successful", status
    assert_mean_in_log(namespace, status["jobRunnerPodName"])
    wait_for("the job's DaskCluster to be deleted",
             lambda: not kubectl_json("-n", namespace, "get", "daskclusters")["items"])

    metrics = metrics_of(release.namespace, pod["metadata"]["name"])
    assert metric_value(metrics, "dask_operator_leader") == 1
    assert metric_value(metrics, "dask_operator_reconciles_total", 'kind="DaskJob"') > 0
    assert metric_value(metrics, "dask_operator_daskjobs", 'phase="Successful"') == 1
    assert metric_value(metrics, "dask_operator_daskjob_duration_seconds_count", 'outcome="Successful"') == 1
    # The operator's own log is JSON-free text here (logFormat=text) and has no colour codes.
    log = kubectl("-n", release.namespace, "logs", pod["metadata"]["name"]).stdout
    assert "\x1b[" not in log and "caches synced" in log, log[-2000:]


def can_i(sa: str, verb: str, resource: str, namespace: str | None, name: str = "") -> bool:
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource + (f"/{name}" if name else ""), "--as", sa]
    args += [f"--subresource={sub}"] if sub else []
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    out = kubectl(*args, check=False).stdout.strip()
    assert out in ("yes", "no"), out
    return out == "yes"


# Every (verb, resource) the code uses in a watched namespace, and things it must never be able to do.
NEEDED = [
    *[(v, "daskclusters.kubernetes.dask.org") for v in ("get", "list", "watch", "create", "patch", "delete")],
    *[(v, "daskworkergroups.kubernetes.dask.org") for v in ("list", "watch", "create", "patch", "delete")],
    *[(v, "daskautoscalers.kubernetes.dask.org") for v in ("list", "watch", "patch", "delete")],
    # delete: a finished job past its ttlSecondsAfterFinished.
    *[(v, "daskjobs.kubernetes.dask.org") for v in ("list", "watch", "patch", "delete")],
    *[("patch", f"{k}.kubernetes.dask.org/status") for k in ("daskclusters", "daskworkergroups", "daskjobs",
                                                             "daskautoscalers")],
    *[("update", f"{k}.kubernetes.dask.org/finalizers") for k in ("daskclusters", "daskworkergroups",
                                                                  "daskjobs")],
    *[(v, r) for r in ("deployments.apps", "services") for v in ("list", "watch", "create", "patch", "delete")],
    # delete: a suspended job's runner, attempts beyond the kept ones.
    *[(v, "pods") for v in ("get", "list", "watch", "create", "patch", "delete")],
    # The scheduler's HTTP API through the API server (an operator outside the cluster).
    ("get", "services/proxy"), ("create", "services/proxy"),
    ("create", "events.events.k8s.io"), ("patch", "events.events.k8s.io"),
]
FORBIDDEN = [
    ("get", "secrets"), ("list", "secrets"), ("watch", "secrets"), ("get", "configmaps"),
    ("create", "pods/exec"),
    ("create", "daskjobs.kubernetes.dask.org"), ("update", "deployments.apps"),
    ("create", "roles.rbac.authorization.k8s.io"), ("delete", "namespaces"),
    ("create", "events"),  # core/v1 events: the operator writes events.k8s.io/v1 only
    # Verbs the code does not use (reads come from watches): dropped from the rules.
    ("get", "deployments.apps"), ("get", "services"),
    ("get", "daskworkergroups.kubernetes.dask.org"), ("get", "daskjobs.kubernetes.dask.org"),
    ("get", "daskclusters.kubernetes.dask.org/status"), ("delete", "services/proxy"),
]


def test_namespaced_release_has_least_privilege_and_runs_a_job(release, namespace, namespaces):
    other = namespaces("other")
    release.install("rbac.mode=namespaced", f"rbac.namespaces={{{namespace}}}")
    sa = release.service_account()

    wrong = [(v, r) for v, r in NEEDED if not can_i(sa, v, r, namespace)]
    assert not wrong, f"the operator lacks rights its code uses in {namespace}: {wrong}"
    extra = [(v, r) for v, r in FORBIDDEN if can_i(sa, v, r, namespace)]
    assert not extra, f"the operator has rights it must not have in {namespace}: {extra}"
    outside = [(v, r) for v, r in NEEDED if can_i(sa, v, r, other)]
    assert not outside, f"the operator can act outside its namespaces ({other}): {outside}"
    assert not can_i(sa, "list", "daskclusters.kubernetes.dask.org", None)
    assert not can_i(sa, "list", "pods", None)
    # Cluster scope: read its own four CRDs, nothing else.
    assert can_i(sa, "get", "customresourcedefinitions.apiextensions.k8s.io", None, "daskjobs.kubernetes.dask.org")
    assert not can_i(sa, "get", "customresourcedefinitions.apiextensions.k8s.io", None,
                     "leases.coordination.k8s.io")
    assert not can_i(sa, "update", "customresourcedefinitions.apiextensions.k8s.io", None,
                     "daskjobs.kubernetes.dask.org")
    # The leader Lease: only its own, only in the release namespace.
    assert can_i(sa, "get", "leases.coordination.k8s.io", release.namespace, "dask-operator")
    assert can_i(sa, "patch", "leases.coordination.k8s.io", release.namespace, "dask-operator")
    assert not can_i(sa, "get", "leases.coordination.k8s.io", release.namespace, "someone-else")
    assert not can_i(sa, "create", "leases.coordination.k8s.io", namespace)

    kubectl("-n", namespace, "apply", "-f", "-", input=example_job("example"))
    status = wait_job_done(namespace, "example")
    assert status["jobStatus"] == "Successful", status
    assert_mean_in_log(namespace, status["jobRunnerPodName"])
    [pod] = release.pods()
    log = kubectl("-n", release.namespace, "logs", pod["metadata"]["name"]).stdout
    assert "forbidden" not in log.lower(), log[-3000:]


SLOW_JOB = """
import time
from distributed import Client
import dask.array as da
client = Client()
client.wait_for_workers(2)
time.sleep(25)
x = da.random.random((4000, 4000), chunks=(1000, 1000))
print((x + x.T).mean().compute())
"""


def lease_holder(namespace: str) -> str | None:
    lease = kubectl_json("-n", namespace, "get", "lease", "dask-operator")
    return lease["spec"].get("holderIdentity")


def test_second_replica_takes_over_when_the_leader_goes(release, namespace):
    release.install("replicaCount=2", "rbac.mode=namespaced", f"rbac.namespaces={{{namespace}}}",
                    "leaderElection.leaseDurationSeconds=10")
    pods = wait_for("two ready operator pods", lambda: len(p := release.pods()) == 2 and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in x["status"].get("conditions", []))
        for x in p) and p)
    names = {p["metadata"]["name"] for p in pods}
    leader = wait_for("a lease holder", lambda: (h := lease_holder(release.namespace)) in names and h)
    [follower] = names - {leader}

    kubectl("-n", namespace, "apply", "-f", "-", input=example_job("slow", SLOW_JOB))
    running = wait_for("the job to run", lambda: (s := job_status(namespace, "slow")).get("jobStatus") == "Running" and s)
    runner = running["jobRunnerPodName"]
    runner_uid = kubectl_json("-n", namespace, "get", "pod", runner)["metadata"]["uid"]
    # The follower is ready but idle: it has reconciled nothing.
    idle = metrics_of(release.namespace, follower)
    assert metric_value(idle, "dask_operator_leader") == 0
    assert metric_value(idle, "dask_operator_reconciles_total", 'kind="DaskJob"') == 0, idle

    deleted = time.monotonic()
    kubectl("-n", release.namespace, "delete", "pod", leader, "--wait=false")
    # The leader releases the lease on SIGTERM; the waiting follower or the leader's replacement pod,
    # whichever asks first, takes it over.
    new_leader = wait_for("another replica to take the lease",
                          lambda: (h := lease_holder(release.namespace)) not in (None, "", leader) and h,
                          timeout=60, interval=0.2)
    takeover = time.monotonic() - deleted
    print(f"takeover after deleting the leader pod: {takeover:.1f}s (by {'the follower' if new_leader == follower else 'the replacement pod'})")
    assert takeover < 10 + 5, takeover
    assert new_leader in {p["metadata"]["name"] for p in release.pods()}

    status = wait_job_done(namespace, "slow")
    assert status["jobStatus"] == "Successful", status
    runners = kubectl_json("-n", namespace, "get", "pods", "-l", "dask.org/component=job-runner")["items"]
    assert [p["metadata"]["uid"] for p in runners] == [runner_uid], "the runner pod was recreated"
    assert_mean_in_log(namespace, runner)
    # The new leader did the work; every other replica is a follower that did none.
    now = metrics_of(release.namespace, new_leader)
    assert metric_value(now, "dask_operator_leader") == 1
    assert metric_value(now, "dask_operator_reconciles_total", 'kind="DaskJob"') > 0
    for p in release.pods():
        name = p["metadata"]["name"]
        if name not in (new_leader, leader) and p["status"].get("phase") == "Running":
            other = metrics_of(release.namespace, name)
            assert metric_value(other, "dask_operator_leader") == 0
            assert metric_value(other, "dask_operator_reconciles_total", 'kind="DaskJob"') == 0


def test_helm_upgrade_upgrades_the_crds(release, namespace, tmp_path):
    release.install("rbac.mode=namespaced", f"rbac.namespaces={{{namespace}}}")
    field = "upgradeTestField"

    def served() -> bool:
        obj = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
               "metadata": {"name": "probe", "namespace": namespace},
               "spec": {field: "kept", "worker": {"spec": {"containers": []}},
                        "scheduler": {"spec": {"containers": []}, "service": {}}}}
        import json
        out = kubectl("create", "--dry-run=server", "--validate=ignore", "-o", "json", "-f", "-", input=json.dumps(obj)).stdout
        return json.loads(out)["spec"].get(field) == "kept"

    assert not served(), "the field is served before the upgrade"
    chart = tmp_path / "dask-operator"
    shutil.copytree(CHART, chart)
    crds = chart / "templates" / "crds.yaml"
    text = crds.read_text()
    cluster_doc_end = text.index("\n---", text.index("name: daskclusters.kubernetes.dask.org"))
    head, tail = text[:cluster_doc_end], text[cluster_doc_end:]
    marker = "\n              idleTimeout:"
    assert marker in head
    head = head.replace(marker, f"\n              {field}:\n                type: string{marker}", 1)
    crds.write_text(head + tail)
    try:
        release.install("rbac.mode=namespaced", f"rbac.namespaces={{{namespace}}}", chart=chart, crds=True)
        wait_for("the new field to be served", served, timeout=30)
    finally:
        # Back to the chart's CRDs, for the tests after this one.
        release.install("rbac.mode=namespaced", f"rbac.namespaces={{{namespace}}}", crds=True)
    assert not served()


def test_kustomize_namespaced_overlay_runs_a_job(operator_image):
    """`kubectl apply -k deploy/namespaced` as the docs say: the operator in namespace dask-operator
    watching dask-jobs, with the image tag of the overlay (the crate version, imported with the image)."""
    import yaml

    rendered = kubectl("kustomize", str(REPO / "deploy" / "namespaced")).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    # Everything but the CRDs (shared by every test) and the namespaces is removed afterwards.
    owned = [o for o in objects if o["kind"] not in ("CustomResourceDefinition", "Namespace")]
    kubectl("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "deploy" / "namespaced"))
    try:
        kubectl("-n", "dask-operator", "rollout", "status", "deployment/dask-operator", "--timeout=120s")
        kubectl("-n", "dask-jobs", "apply", "-f", "-", input=example_job("kustomized"))
        status = wait_job_done("dask-jobs", "kustomized")
        assert status["jobStatus"] == "Successful", status
        assert_mean_in_log("dask-jobs", status["jobRunnerPodName"])
    finally:
        kubectl("-n", "dask-jobs", "delete", "daskjob", "kustomized", "--ignore-not-found", "--wait=true",
                check=False)
        kubectl("delete", "--ignore-not-found", "--wait=true", "-f", "-", input=yaml.safe_dump_all(owned),
                check=False)
        kubectl("delete", "namespace", "dask-jobs", "dask-operator", "--ignore-not-found", "--wait=false",
                check=False)
