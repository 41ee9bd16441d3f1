"""Migration from the dask-kubernetes operator (kopf, Python) to ours, as docs/migrating.md describes it.

The real kopf operator of the pinned dask-kubernetes wheel runs a DaskCluster (with a second worker
group and an autoscaler) and a DaskJob on upstream's own CRDs; it is stopped while the job's runner is
still working; ours is installed with the chart and upgrades the CRDs itself at start
(crds.upgradeOnStart). It must take everything over without restarting a single Dask pod: the job
ends Successful, no pod, ReplicaSet or Deployment generation changes, kopf's finalizers and
annotations are removed.

CRDs are cluster-wide and shared with every other test: upstream's are installed only for as long
as the kopf phase needs them (about a minute), and ours are put back in a `finally` whatever happens.
The kopf operator and the test client run from the cached venv of tests/conformance/venv.sh (never
the system Python); the wheel's CRD files are read from the same wheel.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import KUBECONFIG, REPO, kubectl, kubectl_json, wait_for

sys.path.insert(0, str(REPO / "tests" / "compat"))
from fetch_wheel import read_crd_texts  # noqa: E402

VENV_SH = REPO / "tests" / "conformance" / "venv.sh"
OUR_CRDS = REPO / "crds" / "dask-operator.yaml"
CRD_NAMES = [f"dask{kind}.kubernetes.dask.org" for kind in ("clusters", "workergroups", "jobs", "autoscalers")]
KINDS = ["daskcluster", "daskworkergroup", "daskjob", "daskautoscaler"]
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
KOPF_PREFIX = "kopf.zalando.org/"
IMAGE = "ghcr.io/dask/dask:2026.8.0"
# Seconds the runner works on after its workers are there: long enough for kopf to stop and our
# operator to be installed and take over while it runs.
HOLD_SECONDS = 60
MEAN = re.compile(r"^\s*(\d+\.\d+)\s*$", re.M)


# --- the kopf side -------------------------------------------------------------------------------


def _venv_sh(*args: str) -> str:
    proc = subprocess.run([str(VENV_SH), *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{VENV_SH} {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def wheel() -> Path:
    """The pinned dask-kubernetes wheel (fetched once, sha256-checked)."""
    return Path(_venv_sh("--wheel"))


@pytest.fixture(scope="session")
def kopf_python() -> Path:
    """Python of the cached test-client venv: the pinned wheel, kopf and the Dask client."""
    python = Path(_venv_sh())
    assert (python.parent / "kopf").is_file(), f"no kopf in {python.parent}"
    return python


@pytest.fixture(scope="session")
def upstream_crds(wheel) -> list[dict]:
    """The four CRDs of the pinned wheel (its Helm chart's crds/ directory)."""
    texts = read_crd_texts(wheel)
    crds = [yaml.safe_load(text) for text in texts.values()]
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(CRD_NAMES), sorted(texts)
    return crds


def _replace_or_create(doc: dict) -> None:
    text = json.dumps(doc)
    if kubectl("replace", "-f", "-", input=text, check=False).returncode != 0:
        kubectl("create", "-f", "-", input=text)


def restore_our_crds() -> None:
    for doc in yaml.safe_load_all(OUR_CRDS.read_text()):
        if doc:
            _replace_or_create(doc)


def _crd(name: str) -> dict:
    return kubectl_json("get", "crd", name)


def _has_status_subresource(crd: dict) -> bool:
    return any("status" in (v.get("subresources") or {}) for v in crd["spec"]["versions"])


@contextlib.contextmanager
def upstream_crds_installed(crds: list[dict], namespace: str) -> Iterator[dict[str, str]]:
    """Replaces our CRDs with upstream's until the block ends, then puts ours back. Yields the
    resourceVersions upstream's got, to tell whether someone else replaced them meanwhile."""
    try:
        for doc in crds:
            _replace_or_create(doc)
        kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES))

        # Served as upstream's: a DaskCluster's status is part of the object (no status subresource),
        # which kopf's first status patch relies on.
        def served() -> bool:
            probe = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
                     "metadata": {"name": "probe", "namespace": namespace},
                     "spec": {"worker": {"spec": {"containers": []}},
                              "scheduler": {"spec": {"containers": []}, "service": {}}},
                     "status": {"phase": "Probe"}}
            out = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe),
                          check=False)
            return out.returncode == 0 and json.loads(out.stdout).get("status", {}).get("phase") == "Probe"

        try:
            wait_for("upstream's CRDs to be served", served, timeout=30)
        except AssertionError as e:
            crd = kubectl_json("get", "crd", CRD_NAMES[0], "--show-managed-fields")
            writers = [(f.get("manager"), f.get("operation"), f.get("time")) for f in crd["metadata"]["managedFields"]]
            raise AssertionError(f"{e}; {CRD_NAMES[0]} has a status subresource: "
                                 f"{_has_status_subresource(crd)}, written by {writers}") from None
        yield {n: _crd(n)["metadata"]["resourceVersion"] for n in CRD_NAMES}
    finally:
        restore_our_crds()


def crds_changed_by_others(versions: dict[str, str]) -> list[str]:
    return [n for n in CRD_NAMES if _crd(n)["metadata"]["resourceVersion"] != versions[n]]


class Kopf:
    """`kopf run --standalone -m dask_kubernetes.operator.controller --namespace <ns>` from the venv."""

    def __init__(self, python: Path, namespace: str, log: Path):
        self.log = log
        env = dict(os.environ, KUBECONFIG=KUBECONFIG)
        self.proc = subprocess.Popen(
            [str(python.parent / "kopf"), "run", "--standalone", "-m", "dask_kubernetes.operator.controller",
             "--namespace", namespace],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_for("kopf to log in", lambda: self.exited() or "Initial authentication has finished" in self.text(),
                 timeout=60)
        assert self.proc.poll() is None, f"kopf exited {self.proc.returncode}:\n{self.text()[-3000:]}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> int:
        """SIGTERM, as a Deployment's pod gets on `helm uninstall`; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"kopf did not stop within 60s of SIGTERM:\n{self.text()[-3000:]}")


# --- the objects ---------------------------------------------------------------------------------


def _container(name: str, args: list[str], env: list[dict] | None = None, **more) -> dict:
    c = {"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent", "args": args, **more}
    if env:
        c["env"] = env
    return c


def _scheduler(cluster: str) -> dict:
    probe = {"httpGet": {"port": "http-dashboard", "path": "/health"}, "initialDelaySeconds": 2, "periodSeconds": 5}
    return {
        "metadata": {"labels": {"scheduler-sublabel": "label-value"},
                     "annotations": {"scheduler-subannotation": "annotation-value"}},
        "spec": {"containers": [_container(
            "scheduler", ["dask-scheduler"], [{"name": "SCHEDULER_ENV", "value": "hello-world"}],
            ports=[{"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                   {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"}],
            readinessProbe=probe)]},
        "service": {"type": "ClusterIP",
                    "selector": {"dask.org/cluster-name": cluster, "dask.org/component": "scheduler"},
                    "ports": [{"name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm"},
                              {"name": "http-dashboard", "protocol": "TCP", "port": 8787,
                               "targetPort": "http-dashboard"}]},
    }


def _worker(replicas: int) -> dict:
    return {
        "replicas": replicas,
        "metadata": {"labels": {"worker-sublabel": "label-value"},
                     "annotations": {"worker-subannotation": "annotation-value"}},
        "spec": {"containers": [_container(
            "worker", ["dask-worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads", "1",
                       "--dashboard-address", "8788"],
            [{"name": "WORKER_ENV", "value": "hello-world"}],
            ports=[{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}])]},
    }


RUNNER = f"""
import time
import dask.array as da
from distributed import Client

client = Client()  # DASK_SCHEDULER_ADDRESS, appended by the operator
client.wait_for_workers(2)
print("workers ready", flush=True)
time.sleep({HOLD_SECONDS})  # the takeover happens now
x = da.random.random((5000, 5000), chunks=(1000, 1000))
print((x + x.T).mean().compute(), flush=True)
"""


def manifests() -> list[dict]:
    """A DaskCluster `simple` with labels and annotations everywhere, a second worker group with its
    own DASK_WORKER_NAME, an autoscaler (kopf puts a finalizer on it), and a DaskJob `migjob`."""
    meta = {"labels": {"test-label": "label-value"}, "annotations": {"test-annotation": "annotation-value"}}
    cluster = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster",
               "metadata": {"name": "simple", **meta},
               "spec": {"worker": _worker(1), "scheduler": _scheduler("simple")}}
    group = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskWorkerGroup",
             "metadata": {"name": "simple-additional", "labels": {"group-label": "group-value"}},
             "spec": {"cluster": "simple", "worker": {"replicas": 1, "spec": {"containers": [_container(
                 "worker", ["dask-worker", "--nthreads", "1", "--dashboard-address", "8788"],
                 [{"name": "DASK_WORKER_NAME", "value": "additional-worker"}])]}}}}
    autoscaler = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskAutoscaler",
                  "metadata": {"name": "simple"}, "spec": {"cluster": "simple", "minimum": 1, "maximum": 1}}
    job = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskJob",
           "metadata": {"name": "migjob", "labels": {"job-label": "job-value"},
                        "annotations": {"job-annotation": "annotation-value"}},
           "spec": {"job": {"spec": {"containers": [_container("job", ["python", "-c", RUNNER])]}},
                    "cluster": {"spec": {"worker": _worker(2), "scheduler": _scheduler("migjob")}}}}
    return [cluster, group, autoscaler, job]


# --- what the test compares ----------------------------------------------------------------------


def snapshot(namespace: str) -> dict[str, dict]:
    """UIDs (and restart counts) of every pod, UIDs of the ReplicaSets and Services, UIDs and
    generations of the Deployments."""
    def items(kind: str) -> list[dict]:
        return kubectl_json("-n", namespace, "get", kind)["items"]

    def restarts(pod: dict) -> int:
        return sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses") or [])

    return {
        "pods": {p["metadata"]["name"]: (p["metadata"]["uid"], restarts(p)) for p in items("pods")},
        "replicasets": {r["metadata"]["name"]: r["metadata"]["uid"] for r in items("replicasets")},
        "services": {s["metadata"]["name"]: s["metadata"]["uid"] for s in items("services")},
        "deployments": {d["metadata"]["name"]: (d["metadata"]["uid"], d["metadata"]["generation"])
                        for d in items("deployments")},
    }


def differences(before: dict[str, dict], now: dict[str, dict], gone_ok: str | None = None) -> list[str]:
    """What changed from `before` to `now`: an object replaced, added or (unless its name starts with
    `gone_ok`, a cluster being deleted) removed; a pod restarted; a Deployment's generation."""
    found = []
    for kind, objects in now.items():
        for name, value in objects.items():
            if name not in before[kind]:
                found.append(f"new {kind[:-1]} {name}")
            elif value != before[kind][name]:
                found.append(f"{kind[:-1]} {name}: {before[kind][name]} -> {value}")
        for name in before[kind]:
            if name not in objects and not (gone_ok and name.startswith(gone_ok)):
                found.append(f"{kind[:-1]} {name} is gone")
    return found


def kopf_leftovers(namespace: str) -> list[str]:
    """kopf's finalizers and annotations on the objects of the namespace it handled: the four kinds,
    the scheduler Services and the runner pod."""
    found = []
    for kind in KINDS + ["services", "pods"]:
        for obj in kubectl_json("-n", namespace, "get", kind)["items"]:
            m = obj["metadata"]
            what = f"{obj['kind']} {m['name']}"
            found += [f"{what}: finalizer {f}" for f in m.get("finalizers") or [] if f == KOPF_FINALIZER]
            found += [f"{what}: annotation {a}" for a in m.get("annotations") or {} if a.startswith(KOPF_PREFIX)]
    return found


def written_by_our_operator(namespace: str) -> list[str]:
    """Objects that a dask-operator (of another test, watching every namespace) already wrote."""
    found = []
    for kind in KINDS + ["deployments", "services", "pods"]:
        for obj in kubectl_json("-n", namespace, "get", kind, "--show-managed-fields")["items"]:
            managers = {f.get("manager", "") for f in obj["metadata"].get("managedFields") or []}
            if any(m.startswith("dask-operator") for m in managers):
                found.append(f"{obj['kind']} {obj['metadata']['name']}")
    return found


def jobstatus(namespace: str) -> dict:
    return kubectl_json("-n", namespace, "get", "daskjob", "migjob").get("status") or {}


def phase(namespace: str, cluster: str) -> str | None:
    got = kubectl("-n", namespace, "get", "daskcluster", cluster, "-o", "jsonpath={.status.phase}", check=False)
    return got.stdout if got.returncode == 0 else None


def ready_deployments(namespace: str) -> int:
    return sum(1 for d in kubectl_json("-n", namespace, "get", "deployments")["items"]
               if (d.get("status") or {}).get("readyReplicas") == 1)


class Waiting(str):
    """A state that is not there yet: false, but it says what was seen (in wait_for's timeout)."""

    def __bool__(self) -> bool:
        return False


def kopf_state(namespace: str) -> bool | Waiting:
    # A cluster's phase under kopf: it writes Pending, then Running from a handler that sometimes
    # comes late (seen once with the job already Successful); either shows kopf runs the cluster.
    def kopf_phase(cluster: str) -> str | None:
        got = phase(namespace, cluster)
        return "Pending or Running" if got in ("Pending", "Running") else got

    seen = {
        "job": jobstatus(namespace).get("jobStatus"),
        "simple": kopf_phase("simple"),
        "migjob": kopf_phase("migjob"),
        "ready deployments": ready_deployments(namespace),
        "workers ready in runner log": "workers ready" in runner_log(namespace),
    }
    expected = {"job": "Running", "simple": "Pending or Running", "migjob": "Pending or Running", "ready deployments": 6,
                "workers ready in runner log": True}
    return seen == expected or Waiting(repr(seen))


def runner_log(namespace: str) -> str:
    return kubectl("-n", namespace, "logs", "migjob-runner", check=False).stdout


def runner_phase(namespace: str) -> str:
    return kubectl("-n", namespace, "get", "pod", "migjob-runner", "-o", "jsonpath={.status.phase}").stdout


def strip_kopf_finalizers(namespace: str) -> None:
    """So that the namespace can go even if our operator never ran (kopf is stopped by then)."""
    for kind in KINDS:
        got = kubectl("-n", namespace, "get", kind, "-o", "name", check=False)
        for name in got.stdout.split():
            kubectl("-n", namespace, "patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                    check=False)


# --- the tests -----------------------------------------------------------------------------------


def test_python_operator_is_taken_over_without_restarting_a_pod(kopf_python, upstream_crds, release,
                                                              namespace, tmp_path):
    timings: dict[str, float] = {}
    start = time.monotonic()
    kopf = None
    try:
        with upstream_crds_installed(upstream_crds, namespace) as crd_versions:
            # 1. The Python operator runs the objects, on upstream's CRDs.
            kopf = Kopf(kopf_python, namespace, tmp_path / "kopf.log")
            for doc in manifests():
                kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(doc))
            wait_for("kopf: job Running, both clusters Running, six Deployments ready, the runner's workers",
                     lambda: kopf_state(namespace), timeout=240, interval=1)
            timings["kopf phase"] = time.monotonic() - start

            changed = crds_changed_by_others(crd_versions)
            assert not changed, (f"the CRDs {changed} were replaced by someone else while kopf ran; the kopf "
                                 "phase is not what this test means to check (run it again)")
            early = written_by_our_operator(namespace)
            assert not early, (f"a dask-operator watching every namespace wrote {early} while kopf ran; "
                               "this test needs the namespace to itself (run it again)")
            # What kopf leaves: its finalizer on clusters and autoscalers (timers), its diff base on all.
            status = jobstatus(namespace)
            assert (status.get("clusterName"), status.get("jobRunnerPodName")) == ("migjob", "migjob-runner")
            leftovers = kopf_leftovers(namespace)
            for expected in ["DaskCluster simple: finalizer", "DaskAutoscaler simple: finalizer",
                             "DaskJob migjob: annotation", "DaskWorkerGroup simple-additional: annotation",
                             "Pod migjob-runner: annotation", "Service simple-scheduler: annotation"]:
                assert any(x.startswith(expected) for x in leftovers), f"kopf left no {expected!r}: {leftovers}"
            before = snapshot(namespace)
            assert len(before["pods"]) == 7 and len(before["deployments"]) == 6, before

            # 2. The Python operator goes (as with `helm uninstall` of its chart; the CRDs stay).
            stopped = time.monotonic()
            assert kopf.stop() == 0, kopf.text()[-3000:]

            # 3. Ours is installed and upgrades the CRDs itself at start.
            release.install("rbac.mode=namespaced", f"rbac.namespaces={{{namespace}}}", "crds.upgradeOnStart=true")
            timings["kopf stopped to ours ready"] = time.monotonic() - stopped
        # (upstream_crds_installed put our CRDs back too, in case the operator did not.)

        ours = {d["metadata"]["name"]: d for d in yaml.safe_load_all(OUR_CRDS.read_text()) if d}
        for name in CRD_NAMES:
            crd = _crd(name)
            assert _has_status_subresource(crd), f"{name} has no status subresource after the takeover"
            for key in ("kubernetes.dask.org/operator-version", "kubernetes.dask.org/schema-hash"):
                assert crd["metadata"]["annotations"].get(key) == ours[name]["metadata"]["annotations"][key], (
                    f"{name}: {key}")
            # Replaced, not merged: nothing of upstream's schema is left.
            assert crd["spec"]["versions"] == ours[name]["spec"]["versions"], f"{name}: versions differ from ours"
        assert runner_phase(namespace) == "Running", "the runner ended before the takeover: raise HOLD_SECONDS"
        took_over = time.monotonic()
        wait_for("kopf's finalizers and annotations to be removed", lambda: not kopf_leftovers(namespace),
                 timeout=60, interval=1)
        timings["kopf leftovers removed"] = time.monotonic() - took_over

        # 4. Up to the job's end nothing is replaced, restarted or rolled out.
        changes: list[str] = []
        while True:
            now = snapshot(namespace)
            # The terminal status is written before the job's cluster is deleted: a snapshot taken
            # while the job is not finished shows everything that must still be there.
            if (job := jobstatus(namespace)).get("jobStatus") in ("Successful", "Failed"):
                break
            changes += differences(before, now)
            assert time.monotonic() - took_over < 300, f"the job did not finish; status {job}"
            time.sleep(2)
        timings["job end after takeover"] = time.monotonic() - took_over
        assert job["jobStatus"] == "Successful", job
        assert not changes, "pods replaced or restarted, Deployments rolled out:\n" + "\n".join(sorted(set(changes)))
        log = runner_log(namespace)
        means = [float(m) for m in MEAN.findall(log)]
        assert means and abs(means[-1] - 1.0) < 0.01, f"no mean close to 1.0 in the runner's log:\n{log}"

        # 5. The job's cluster is deleted; the other cluster and its children stay as they were.
        wait_for("the job's DaskCluster to be deleted",
                 lambda: kubectl("-n", namespace, "get", "daskcluster", "migjob", check=False).returncode != 0,
                 timeout=60, interval=1)
        after = differences(before, snapshot(namespace), gone_ok="migjob-")
        assert not after, "after the job: " + "\n".join(after)
        assert phase(namespace, "simple") == "Running"
        assert "migjob-runner" in snapshot(namespace)["pods"], "the runner pod (and its log) stays"
    finally:
        if kopf is not None and not kopf.exited():
            kopf.stop()
        strip_kopf_finalizers(namespace)
        print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))


def _host_binary() -> Path:
    explicit = os.environ.get("DASK_OPERATOR_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR")
    if not target:
        rust = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
        cache = os.environ.get("DASK_OPERATOR_CACHE") or str(
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dask-operator")
        target = str(Path(cache) / "cargo-target" / f"rust-{rust}")
    for profile in ("release", "debug"):
        if (Path(target) / profile / "dask-operator").is_file():
            return Path(target) / profile / "dask-operator"
    pytest.fail(f"no operator binary under {target}: cargo build --release --locked (or set DASK_OPERATOR_BIN)")


def test_operator_without_upgrade_flag_refuses_upstream_crds(upstream_crds, namespace):
    """Started on upstream's CRDs without --upgrade-crds, the operator exits at once, saying in one
    line which CRDs are wrong and what to run."""
    binary = _host_binary()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_OPERATOR_")}
    env["KUBECONFIG"] = KUBECONFIG
    with upstream_crds_installed(upstream_crds, namespace):
        proc = subprocess.run([str(binary), "run", "--namespaces", namespace, "--http-addr", "127.0.0.1:0"],
                              capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    [line] = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    for name in CRD_NAMES:
        assert name in line, f"{name} not named in: {line}"
    for remedy in ("--upgrade-crds", "DASK_OPERATOR_UPGRADE_CRDS=true", "kubectl replace -f crds/dask-operator.yaml"):
        assert remedy in line, f"{remedy!r} not in: {line}"
    # Nothing was reconciled: the operator stopped before its controllers started.
    assert "dask-operator running" not in proc.stdout + proc.stderr
