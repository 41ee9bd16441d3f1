"""What must hold for every rendering of the chart, asserted on the objects (not on golden text)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile

import pytest
import yaml

from chartlib import (CASES, CHART, NAMESPACE, REPO, env_of, generate, objects, one,
                      operator_container, render, run)

# What the operator does in a namespace it watches: exactly this, in both RBAC modes.
NAMESPACE_RULES = [
    {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskclusters"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskworkergroups"],
     "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskautoscalers"],
     "verbs": ["list", "watch", "patch", "delete"]},
    {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskjobs"],
     "verbs": ["list", "watch", "patch", "delete"]},
    {"apiGroups": ["kubernetes.dask.org"],
     "resources": ["daskclusters/status", "daskworkergroups/status", "daskjobs/status", "daskautoscalers/status"],
     "verbs": ["patch"]},
    {"apiGroups": ["kubernetes.dask.org"],
     "resources": ["daskclusters/finalizers", "daskworkergroups/finalizers", "daskjobs/finalizers"],
     "verbs": ["update"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]
CRD_NAMES = [f"{p}.kubernetes.dask.org" for p in ("daskclusters", "daskworkergroups", "daskjobs", "daskautoscalers")]
ROLE_KINDS = ("ClusterRole", "Role")
NAMESPACED_KINDS = {"ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "Role", "RoleBinding",
                    "ServiceMonitor"}
CLUSTER_KINDS = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def rules(docs):
    for d in docs:
        if d["kind"] in ROLE_KINDS:
            for r in d.get("rules", []):
                yield d, r


@pytest.fixture(params=sorted(CASES))
def case(request):
    return request.param


# --- RBAC -------------------------------------------------------------------------------------


def test_rbac_has_no_wildcards_no_secrets_no_escalation(helm, case):
    docs = render(helm, *CASES[case])
    for role, r in rules(docs):
        where = f"{role['kind']} {role['metadata']['name']}: {r}"
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in v for v in r.get(field, [])), f"wildcard in {where}"
        assert "nonResourceURLs" not in r, where
        assert not {"secrets", "configmaps", "serviceaccounts", "serviceaccounts/token"} & set(r["resources"]), where
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(r["verbs"]), where
        assert not ({"roles", "clusterroles", "rolebindings", "clusterrolebindings"} & set(r["resources"])), where


def test_namespace_rules_are_exactly_what_the_code_uses(helm, case):
    docs = render(helm, *CASES[case])
    full = one(docs, "Deployment")["metadata"]["name"]
    main = [d for d in docs if d["kind"] in ROLE_KINDS and d["metadata"]["name"] == full]
    assert main, "no (Cluster)Role named like the Deployment"
    for role in main:
        assert role["rules"] == NAMESPACE_RULES, f"{role['kind']} {role['metadata']}"


def test_owners_finalizers_can_be_updated_and_nothing_is_replaced(helm, case):
    """Every owner of a child (blockOwnerDeletion under OwnerReferencesPermissionEnforcement needs
    update on its finalizers) in every (Cluster)Role of the operator's namespace rules; the operator
    replaces (PUT, verb update) nothing else there. src/resources/rbac_tests.rs derives the owners
    from the builders."""
    docs = render(helm, *CASES[case])
    full = one(docs, "Deployment")["metadata"]["name"]
    for role in [d for d in docs if d["kind"] in ROLE_KINDS and d["metadata"]["name"] == full]:
        granted = {(g, res, v) for r in role["rules"] for g in r["apiGroups"] for res in r["resources"]
                   for v in r["verbs"]}
        for owner in ("daskclusters", "daskworkergroups", "daskjobs"):
            assert ("kubernetes.dask.org", f"{owner}/finalizers", "update") in granted, (role["metadata"], owner)
        assert {res for _, res, v in granted if v == "update"} == {
            "daskclusters/finalizers", "daskworkergroups/finalizers", "daskjobs/finalizers"}


def test_cluster_mode_rbac(helm):
    docs = render(helm)
    assert {d["metadata"]["name"] for d in objects(docs, "ClusterRole")} == {"dask-operator", "dask-operator-crds"}
    crb = one(docs, "ClusterRoleBinding", "dask-operator")
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "dask-operator"}
    assert "DASK_OPERATOR_NAMESPACES" not in env_of(docs), "cluster mode watches all namespaces: no list"
    # The only Role is the Lease's, in the release namespace.
    assert [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in objects(docs, "Role")] == [
        (NAMESPACE, "dask-operator-leader-election")]


def test_namespaced_mode_rbac(helm):
    docs = render(helm, *CASES["namespaced"])
    assert [d["metadata"]["name"] for d in objects(docs, "ClusterRole")] == ["dask-operator-crds"], (
        "namespaced mode: no ClusterRole but the CRD one")
    assert [d["metadata"]["name"] for d in objects(docs, "ClusterRoleBinding")] == ["dask-operator-crds"]
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in objects(docs, "Role")}
    assert roles == {("team-a", "dask-operator"), ("team-b", "dask-operator"),
                     (NAMESPACE, "dask-operator-leader-election")}
    bindings = {(d["metadata"]["namespace"], d["roleRef"]["kind"], d["roleRef"]["name"])
                for d in objects(docs, "RoleBinding")}
    assert bindings == {("team-a", "Role", "dask-operator"), ("team-b", "Role", "dask-operator"),
                        (NAMESPACE, "Role", "dask-operator-leader-election")}
    assert env_of(docs)["DASK_OPERATOR_NAMESPACES"]["value"] == "team-a,team-b"


def test_every_binding_binds_the_operator_service_account_to_a_rendered_role(helm, case):
    docs = render(helm, *CASES[case])
    sa = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs if d["kind"] in ROLE_KINDS}
    for b in objects(docs, "ClusterRoleBinding") + objects(docs, "RoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}], b["metadata"]
        ns = b["metadata"].get("namespace") if b["roleRef"]["kind"] == "Role" else None
        assert (b["roleRef"]["kind"], ns, b["roleRef"]["name"]) in roles, f"{b['metadata']} binds a role not rendered"


def test_leases_only_in_the_release_namespace(helm, case):
    docs = render(helm, *CASES[case])
    lease_roles = [(role, r) for role, r in rules(docs) if "coordination.k8s.io" in r["apiGroups"]]
    enabled = "leaderElection.enabled=false" not in CASES[case]
    assert bool(lease_roles) == enabled
    for role, r in lease_roles:
        assert role["kind"] == "Role" and role["metadata"]["namespace"] == NAMESPACE, role["metadata"]
        assert r["resources"] == ["leases"]
        if r["verbs"] != ["create"]:  # create cannot be limited by name; everything else is
            assert r["verbs"] == ["get", "patch"]
            assert r["resourceNames"] == [env_of(docs)["DASK_OPERATOR_LEASE_NAME"]["value"]]
    env = env_of(docs)
    assert env["DASK_OPERATOR_LEADER_ELECT"]["value"] == ("true" if enabled else "false")
    assert env["DASK_OPERATOR_LEASE_NAMESPACE"]["value"] == NAMESPACE


def test_crd_cluster_role(helm, case):
    docs = render(helm, *CASES[case])
    (role,) = [d for d in objects(docs, "ClusterRole") if d["metadata"]["name"].endswith("-crds")]
    upgrade = env_of(docs)["DASK_OPERATOR_UPGRADE_CRDS"]["value"] == "true"
    named = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
             "resourceNames": CRD_NAMES, "verbs": ["get", "update"] if upgrade else ["get"]}
    want = [named] + ([{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                        "verbs": ["create"]}] if upgrade else [])
    assert role["rules"] == want


# --- the operator pod ----------------------------------------------------------------------------


def test_restricted_pod_security(helm, case):
    """The Pod Security Standard "restricted", as far as the chart decides it."""
    spec = one(render(helm, *CASES[case]), "Deployment")["spec"]["template"]["spec"]
    assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    for key in ("hostNetwork", "hostPID", "hostIPC", "volumes"):
        assert key not in spec, key
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532 and sc["runAsGroup"] == 65532
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "privileged" not in sc
        assert all("hostPort" not in p for p in c.get("ports", []))


def test_probes_and_port(helm, case):
    c = operator_container(render(helm, *CASES[case]))
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["args"][0] == "run"


def test_deployment_defaults(helm):
    docs = render(helm)
    dep = one(docs, "Deployment", "dask-operator")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "dask-operator"
    assert {"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"} <= set(labels)
    assert dep["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "dask-operator",
                                                      "app.kubernetes.io/instance": "dask-operator"}
    assert dep["spec"]["replicas"] == 1
    spec = dep["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["serviceAccountName"] == "dask-operator"
    assert spec["enableServiceLinks"] is False, "Service env vars would share the DASK_OPERATOR_ prefix"
    c = operator_container(docs)
    assert c["image"] == "ghcr.io/dask/dask-operator:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ["run"]
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    env = {k: v.get("value", v.get("valueFrom")) for k, v in env_of(docs).items()}
    assert env == {
        "DASK_OPERATOR_HTTP_ADDR": "0.0.0.0:8080",
        "DASK_OPERATOR_LOG_FORMAT": "json",
        "RUST_LOG": "info,kube=warn",
        "DASK_OPERATOR_LEADER_ELECT": "true",
        "DASK_OPERATOR_LEASE_NAME": "dask-operator",
        "DASK_OPERATOR_LEASE_NAMESPACE": "dask-operator",
        "DASK_OPERATOR_LEASE_DURATION_SECONDS": "15",
        "DASK_OPERATOR_CONCURRENCY": "16",
        "DASK_OPERATOR_RUNNER_RESTART_LIMIT": "6",
        "DASK_OPERATOR_UPGRADE_CRDS": "false",
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }
    assert all(isinstance(v, str) for v in env.values() if not isinstance(v, dict)), "env values are strings"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": dep["spec"]["selector"]["matchLabels"]}}
    svc = one(docs, "Service", "dask-operator-metrics")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert not objects(docs, "ServiceMonitor")


def test_image_tag_and_two_replicas(helm):
    docs = render(helm, "--set", "image.repository=registry.example/dask-operator", "--set", "image.tag=abc123",
                  "--set", "replicaCount=2")
    assert operator_container(docs)["image"] == "registry.example/dask-operator:abc123"
    assert one(docs, "Deployment")["spec"]["replicas"] == 2


def test_pod_labels_never_replace_the_selector_labels(helm):
    docs = render(helm, "--set", "podLabels.app\\.kubernetes\\.io/name=other", "--set", "podLabels.team=x")
    dep = one(docs, "Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "x"
    assert labels["app.kubernetes.io/name"] == "dask-operator"
    for k, v in dep["spec"]["selector"]["matchLabels"].items():
        assert labels[k] == v


def test_servicemonitor(helm):
    docs = render(helm, *CASES["servicemonitor"])
    sm = one(docs, "ServiceMonitor")
    svc = one(docs, "Service", "dask-operator-metrics")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"][k] == v, "the ServiceMonitor selects the metrics Service"


def test_namespaces_of_objects(helm, case):
    for d in render(helm, *CASES[case]):
        if d["kind"] in CLUSTER_KINDS:
            assert "namespace" not in d["metadata"], generate.key(d)
        else:
            assert d["kind"] in NAMESPACED_KINDS, f"unexpected kind {d['kind']}"
            assert d["metadata"].get("namespace"), f"{generate.key(d)} has no namespace"
            if d["kind"] not in ("Role", "RoleBinding"):
                assert d["metadata"]["namespace"] == NAMESPACE


# --- CRDs ----------------------------------------------------------------------------------------


def test_crds_are_crds_dir_with_keep_policy(helm):
    source = {d["metadata"]["name"]: d for d in generate.load_all((REPO / "crds" / "dask-operator.yaml").read_text())}
    rendered = objects(render(helm), "CustomResourceDefinition")
    assert sorted(d["metadata"]["name"] for d in rendered) == sorted(source) == sorted(CRD_NAMES)
    for d in rendered:
        src = source[d["metadata"]["name"]]
        assert d["spec"] == src["spec"]
        assert d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert d["metadata"]["labels"]["app.kubernetes.io/name"] == "dask-operator"
        for k, v in (src["metadata"].get("annotations") or {}).items():
            assert d["metadata"]["annotations"][k] == v
        for k, v in (src["metadata"].get("labels") or {}).items():
            assert d["metadata"]["labels"][k] == v


def test_crds_install_false_renders_no_crd(helm):
    assert not objects(render(helm, *CASES["crds-elsewhere"]), "CustomResourceDefinition")


def test_crds_are_not_in_the_crds_dir_helm_never_upgrades():
    assert not (CHART / "crds").exists()


# --- packaging -----------------------------------------------------------------------------------


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"], chart["appVersion"]) == (
        "v2", "dask-operator", "0.1.0", "0.1.0")
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False


def test_package_renders_the_same_and_fits_in_a_release_secret(helm, tmp_path):
    run([helm, "package", str(CHART), "--destination", str(tmp_path)])
    (tgz,) = tmp_path.glob("dask-operator-0.1.0.tgz")
    with tarfile.open(tgz) as t:
        names = t.getnames()
    assert "dask-operator/templates/crds.yaml" in names and "dask-operator/values.schema.json" in names
    assert not [n for n in names if "/crds/" in n]
    out = run([helm, "template", "dask-operator", str(tgz), "--namespace", NAMESPACE]).stdout
    assert generate.load_all(out) == render(helm)
    # Helm stores a release (chart files + rendered manifest + values) gzip'ed and base64'ed in one
    # Secret, at most 1 MiB. Estimate it from the same parts.
    buf = io.BytesIO()
    with tarfile.open(tgz) as t:
        for m in t.getmembers():
            if m.isfile():
                buf.write(t.extractfile(m).read())
    buf.write(out.encode())
    size = len(gzip.compress(buf.getvalue())) * 4 // 3
    assert size < 512 * 1024, f"release Secret would be about {size} bytes"


@pytest.mark.parametrize("case", ["defaults", "namespaced", "crds-elsewhere"])
def test_notes_render(helm4, case, tmp_path):
    """NOTES.txt renders (helm template skips it). Helm 4's client-side dry run needs no cluster
    (Helm 3's asks the API server for its version); KUBECONFIG points nowhere so that none is used."""
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "HELM_CACHE_HOME": str(tmp_path),
           "HELM_CONFIG_HOME": str(tmp_path), "HELM_DATA_HOME": str(tmp_path)}
    res = subprocess.run([helm4, "install", "dask-operator", str(CHART), "--namespace", NAMESPACE,
                          "--dry-run=client", *CASES[case]], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    notes = res.stdout.split("NOTES:", 1)[1]
    assert "dask-operator 0.1.0 is installed in namespace dask-operator" in notes
    if case == "namespaced":
        assert "watching the namespaces team-a, team-b." in notes
    else:
        assert "watching every namespace." in notes
    assert ("crds.install is false" in notes) == (case == "crds-elsewhere")
