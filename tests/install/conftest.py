"""Fixtures for the tests of the operator as an in-cluster workload: the chart installed on the local
cluster (hack/cluster-up.sh), the operator image built from the release binary and imported into the
node's containerd (hack/images/import-operator-image.sh), and a namespace per test.

Environment (hack/test.sh sets them):
- KUBECONFIG: the local cluster's admin kubeconfig (default: .cluster/kubeconfig)
- KUBECTL, HELM4, HELM3: binaries (defaults: .cluster/bin/kubectl, and from hack/lib.sh)
- OPERATOR_IMAGE: the image reference (repository:tag) the chart is given; when unset, the session
  imports it with hack/images/import-operator-image.sh (which builds it from the release binary).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "dask-operator"
KUBECONFIG = os.environ.get("KUBECONFIG") or str(REPO / ".cluster" / "kubeconfig")
KUBECTL = os.environ.get("KUBECTL") or str(REPO / ".cluster" / "bin" / "kubectl")


def _lib_var(name: str) -> str:
    out = subprocess.run(["bash", "-c", f"source hack/lib.sh && printf %s \"${name}\""], cwd=REPO,
                         check=True, capture_output=True, text=True)
    return out.stdout


HELM = os.environ.get("HELM4") or _lib_var("HELM4")


def run(*args: str, check: bool = True, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, KUBECONFIG=KUBECONFIG)
    proc = subprocess.run(list(args), capture_output=True, text=True, input=input, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def kubectl(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return run(KUBECTL, *args, **kw)


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def helm(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return run(HELM, *args, **kw)


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 180, interval: float = 0.5) -> Any:
    """Polls `fn` until it returns something truthy; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except AssertionError as e:  # a kubectl call that failed: keep polling
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="session")
def operator_image() -> tuple[str, str]:
    """(repository, tag) of the operator image in the node's containerd."""
    image = os.environ.get("OPERATOR_IMAGE")
    if not image:
        out = run(str(REPO / "hack" / "images" / "import-operator-image.sh"), timeout=900).stdout
        image = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("image="))
    repo, tag = image.rsplit(":", 1)
    return repo, tag


def _new_namespace(prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "dask-operator-test=install")
    return name


def _delete_namespace(name: str) -> None:
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def namespace(request: pytest.FixtureRequest):
    """A namespace of its own for the test, deleted afterwards."""
    name = _new_namespace(request.node.name.replace("_", "-")[:40].rstrip("-").lower())
    yield name
    _delete_namespace(name)


@pytest.fixture
def namespaces():
    """A factory of extra namespaces, all deleted afterwards."""
    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(_new_namespace(prefix))
        return made[-1]

    yield make
    for ns in made:
        _delete_namespace(ns)


class Release:
    """A Helm release of the chart, uninstalled (and its namespace deleted) when the test ends."""

    def __init__(self, name: str, namespace: str, image: tuple[str, str]):
        self.name, self.namespace, self.image = name, namespace, image

    def install(self, *values: str, chart: Path = CHART, crds: bool = False,
                timeout: str = "180s") -> subprocess.CompletedProcess:
        """`helm upgrade --install` with `values` (key=value). The CRDs are cluster-wide and shared by
        every test, installed before with kubectl: a release takes them over only with crds=True."""
        repo, tag = self.image
        args = ["upgrade", "--install", self.name, str(chart), "--namespace", self.namespace,
                "--set", f"image.repository={repo}", "--set", f"image.tag={tag}",
                "--set", "image.pullPolicy=Never", "--set", "logFormat=text",
                "--wait", "--timeout", timeout]
        if crds:
            args += ["--take-ownership", "--force-conflicts"]
        else:
            args += ["--set", "crds.install=false"]
        for v in values:
            args += ["--set", v]
        return helm(*args, timeout=400)

    def pods(self) -> list[dict]:
        return kubectl_json("-n", self.namespace, "get", "pods", "-l",
                            f"app.kubernetes.io/name=dask-operator,app.kubernetes.io/instance={self.name}")["items"]

    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def uninstall(self) -> None:
        helm("uninstall", self.name, "--namespace", self.namespace, "--wait", "--timeout", "120s", check=False)


@pytest.fixture
def release(operator_image, namespaces):
    """A release named `dask-operator` in a namespace of its own (install it with .install())."""
    ns = namespaces("op")
    rel = Release("dask-operator", ns, operator_image)
    yield rel
    rel.uninstall()


def job_status(namespace: str, name: str) -> dict:
    obj = kubectl_json("-n", namespace, "get", "daskjob", name)
    return obj.get("status") or {}


def wait_job_done(namespace: str, name: str, timeout: float = 300) -> dict:
    return wait_for(f"DaskJob {namespace}/{name} to finish",
                    lambda: (s := job_status(namespace, name)).get("jobStatus") in ("Successful", "Failed") and s,
                    timeout=timeout, interval=1)


def example_job(name: str = "example", script: str | None = None) -> str:
    """examples/daskjob.yaml, renamed, optionally with another runner script."""
    import yaml

    job = yaml.safe_load((REPO / "examples" / "daskjob.yaml").read_text())
    job["metadata"]["name"] = name
    svc = job["spec"]["cluster"]["spec"]["scheduler"]["service"]
    svc["selector"]["dask.org/cluster-name"] = name
    if script is not None:
        job["spec"]["job"]["spec"]["containers"][0]["args"] = ["python", "-c", script]
    return yaml.safe_dump(job)


def metrics_of(pod_namespace: str, pod: str) -> str:
    """The pod's /metrics, through the API server's pod proxy."""
    return kubectl("get", "--raw", f"/api/v1/namespaces/{pod_namespace}/pods/{pod}:8080/proxy/metrics").stdout


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample (`name{labels} value`), 0 when absent."""
    key = f"{name}{{{labels}}}" if labels else name
    total = 0.0
    for line in text.splitlines():
        if line.startswith(key + " "):
            total += float(line.split()[-1])
    return total
