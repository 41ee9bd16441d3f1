"""Helpers of the tests of charts/dask-operator and deploy/, without a cluster: helm lint and
helm template with Helm 3 and Helm 4, kubectl kustomize.

The binaries come from the environment, never from PATH, and a missing one fails the tests (it is
never a skip):

    HELM3=/path/to/helm3 HELM4=/path/to/helm4 KUBECTL=/path/to/kubectl python3 -m pytest -q tests/deploy

`hack/lib.sh` exports HELM3 and HELM4 (the pinned builds in ~/.cache/dask-operator/bin/); KUBECTL is
the kubectl of the pinned Kubernetes build (its kustomize is built in).
UPDATE_GOLDEN=1 rewrites tests/deploy/golden/ instead of comparing with it.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "charts"))

import generate  # noqa: E402  (charts/generate.py: the generator of deploy/ and the chart's CRDs)

CHART = generate.CHART
RELEASE = generate.RELEASE
NAMESPACE = generate.NAMESPACE

HELMS = ("HELM3", "HELM4")


def binary(var: str) -> str:
    path = os.environ.get(var)
    if not path:
        pytest.fail(
            f"{var} is not set: point it at the binary (hack/lib.sh exports HELM3 and HELM4; KUBECTL is "
            f"the kubectl of the pinned Kubernetes build, ~/.cache/dask-operator/bin/kubernetes-*/kubectl)",
            pytrace=False,
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{var}={path} is not an executable file (build it: make binaries)", pytrace=False)
    return path


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stderr}{res.stdout}")
    return res


@functools.lru_cache(maxsize=None)
def _render(helm: str, args: tuple[str, ...], release: str, namespace: str) -> tuple:
    return tuple(generate.load_all(generate.helm_template(helm, *args, release=release, namespace=namespace)))


def render(helm: str, *args: str, release: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    """`helm template` of the chart, parsed (cached: the CRDs make each render about 1 MB)."""
    return copy.deepcopy(list(_render(helm, tuple(args), release, namespace)))


def template_error(helm: str, *args: str) -> str:
    """`helm template` that must fail: its error output."""
    cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args]
    res = run(cmd, check=False)
    assert res.returncode != 0, f"{' '.join(cmd)} succeeded; expected it to reject the values"
    return res.stderr


def objects(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[generate.key(d) for d in found]}"
    return found[0]


def operator_container(docs: list[dict]) -> dict:
    dep = one(docs, "Deployment")
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"]
    return c


def env_of(docs: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in operator_container(docs)["env"]}


# The value combinations of the golden tests (and of most invariants): name -> helm args.
VALUES_DIR = HERE / "values"
CASES: dict[str, list[str]] = {
    "defaults": [],
    "namespaced": ["--set", "rbac.mode=namespaced", "--set", "rbac.namespaces={team-a,team-b}"],
    "two-replicas": ["--set", "replicaCount=2"],
    "servicemonitor": ["--set", "metrics.serviceMonitor.enabled=true",
                       "--set", "metrics.serviceMonitor.labels.release=prometheus"],
    "crds-elsewhere": ["--set", "crds.install=false", "--set", "crds.upgradeOnStart=true"],
    "no-leader-election": ["--set", "leaderElection.enabled=false", "--set", "podDisruptionBudget.enabled=false",
                           "--set", "metrics.service.enabled=false"],
    "everything": ["--values", str(VALUES_DIR / "everything.yaml")],
}
