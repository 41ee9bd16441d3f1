"""deploy/: generated from the chart, not stale, and the kustomize overlays render the chart's objects."""

from __future__ import annotations

import json

import yaml

from chartlib import REPO, generate, run


def test_generated_files_are_not_stale(helm3, monkeypatch):
    monkeypatch.setenv("HELM", helm3)
    stale = generate.stale(generate.expected(crds_only=False))
    assert not stale, (f"stale: {[str(p.relative_to(REPO)) for p in stale]}; "
                       "run 'python3 charts/generate.py' (HELM3 set) and commit")


def test_chart_crds_template_is_not_stale():
    assert not generate.stale({generate.CRDS_TEMPLATE: generate.crds_template()}), (
        "charts/dask-operator/templates/crds.yaml is stale: python3 charts/generate.py --crds-only")


def kustomize(kubectl: str, overlay: str) -> dict:
    out = run([kubectl, "kustomize", str(REPO / "deploy" / overlay)]).stdout
    objs = {}
    for o in generate.load_all(out):
        k = generate.key(o)
        assert k not in objs, f"{overlay}: {k} twice"
        objs[k] = o
    return objs


def expected(helm: str, *args: str, namespaces=()) -> dict:
    want = generate.chart_objects(helm, *args)
    for ns in [generate.NAMESPACE, *namespaces]:
        o = generate.namespace_object(ns, ns == generate.NAMESPACE)
        want[generate.key(o)] = o
    return want


def compare(got: dict, want: dict, overlay: str):
    assert sorted(got) == sorted(want), (
        f"{overlay}: only in kustomize: {sorted(set(got) - set(want))}; only in the chart: {sorted(set(want) - set(got))}")
    for k in want:
        assert got[k] == want[k], f"{overlay}: {k} differs from the chart's:\n" + yaml.safe_dump(
            {"kustomize": got[k], "chart": want[k]})[:4000]


def test_cluster_wide_overlay_is_the_chart_defaults(kubectl, helm):
    compare(kustomize(kubectl, "cluster-wide"), expected(helm), "cluster-wide")


def test_namespaced_overlay_is_the_chart_in_namespaced_mode(kubectl, helm):
    args = generate.namespaced_args(generate.EXAMPLE_NAMESPACES)
    compare(kustomize(kubectl, "namespaced"), expected(helm, *args, namespaces=generate.EXAMPLE_NAMESPACES),
            "namespaced")


def test_base_alone_renders(kubectl):
    kinds = {k[0].split("/")[-1] for k in kustomize(kubectl, "base")}
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "ServiceAccount"} <= kinds
    assert "ClusterRoleBinding" in kinds  # the CRD one; the namespace rules come from an overlay


def test_overlays_are_applyable_shapes(kubectl):
    """What `kubectl apply -k` needs without a cluster: every object has apiVersion, kind, name, and the
    Namespace objects come before what lives in them in kustomize's output."""
    for overlay in ("cluster-wide", "namespaced"):
        out = run([kubectl, "kustomize", str(REPO / "deploy" / overlay)]).stdout
        docs = generate.load_all(out)
        seen_ns = set()
        for d in docs:
            assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d
            if d["kind"] == "Namespace":
                seen_ns.add(d["metadata"]["name"])
            elif d["metadata"].get("namespace"):
                assert d["metadata"]["namespace"] in seen_ns, f"{overlay}: {generate.key(d)} before its Namespace"


def test_dev_rbac_covers_the_chart_rules(helm3):
    """deploy/rbac.yaml (the host-run operator on the local cluster) has the chart's namespace rules."""
    role, binding = generate.load_all((REPO / "deploy" / "rbac.yaml").read_text())
    chart_rules = generate.chart_objects(helm3)[("rbac.authorization.k8s.io/v1/ClusterRole", "", "dask-operator")]["rules"]
    assert role["rules"][: len(chart_rules)] == chart_rules
    assert role["metadata"]["name"] == generate.DEV_ROLE != "dask-operator"
    assert binding["roleRef"]["name"] == generate.DEV_ROLE


def test_objects_fit_client_side_apply(kubectl):
    """`kubectl apply -k` (client-side) stores each object in the last-applied-configuration
    annotation, and an object's annotations may total 256 KiB: the DaskJob CRD (three PodSpecs) is
    the one that could outgrow it."""
    limit = 256 * 1024
    for overlay in ("cluster-wide", "namespaced"):
        for k, o in kustomize(kubectl, overlay).items():
            size = len(json.dumps(o, separators=(",", ":")))
            assert size < limit * 0.9, (
                f"{k} is {size} bytes as JSON: near the 256 KiB annotation limit of client-side apply; "
                "document `kubectl apply --server-side -k` instead")
