"""Bad values are rejected by values.schema.json (both Helm majors), with a message naming the value."""

from __future__ import annotations

import pytest

from chartlib import template_error

# helm args -> what the message must contain (the value's JSON pointer, as Helm reports it).
BAD = {
    "unknown rbac.mode": (["--set", "rbac.mode=everywhere"], "/rbac/mode"),
    "negative replicaCount": (["--set", "replicaCount=-1"], "/replicaCount"),
    "namespaced without namespaces": (["--set", "rbac.mode=namespaced"], "/rbac/namespaces"),
    "namespaced with an empty list": (["--set", "rbac.mode=namespaced", "--set-json", "rbac.namespaces=[]"],
                                      "/rbac/namespaces"),
    "invalid namespace name": (["--set", "rbac.mode=namespaced", "--set", "rbac.namespaces={Team_A}"],
                               "/rbac/namespaces/0"),
    "duplicate namespace": (["--set", "rbac.mode=namespaced", "--set", "rbac.namespaces={a,a}"], "/rbac/namespaces"),
    "unknown log format": (["--set", "logFormat=xml"], "/logFormat"),
    "typo at the top level": (["--set", "replicaCont=2"], "replicaCont"),
    "typo nested": (["--set", "image.tagg=1"], "tagg"),
    "replicaCount not a number": (["--set", "replicaCount=two"], "/replicaCount"),
    "several replicas without leader election": (
        ["--set", "leaderElection.enabled=false", "--set", "replicaCount=2"], "/replicaCount"),
    "lease duration too short": (["--set", "leaderElection.leaseDurationSeconds=1"],
                                 "/leaderElection/leaseDurationSeconds"),
    "zero concurrency": (["--set", "concurrency=0"], "/concurrency"),
    "negative runner restart limit": (["--set", "runnerRestartLimit=-1"], "/runnerRestartLimit"),
    "unknown pull policy": (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    "empty image repository": (["--set", "image.repository="], "/image/repository"),
    "ServiceMonitor without the Service": (
        ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
        "/metrics/service/enabled"),
    "bad scrape interval": (["--set", "metrics.serviceMonitor.interval=often"], "/metrics/serviceMonitor/interval"),
    "bad PDB maxUnavailable": (["--set", "podDisruptionBudget.maxUnavailable=some"],
                               "/podDisruptionBudget/maxUnavailable"),
    "crds.install not a boolean": (["--set-string", "crds.install=yes"], "/crds/install"),
    "extraEnv without a name": (["--set-json", 'extraEnv=[{"value":"x"}]'], "/extraEnv/0"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_schema_rejects(helm, name):
    args, needle = BAD[name]
    err = template_error(helm, *args)
    assert "schema" in err and needle in err, f"{name}: the message does not name {needle!r}:\n{err}"


# Without the schema (helm template --skip-schema-validation), the templates still refuse what
# would render a broken operator.
@pytest.mark.parametrize("args,needle", [
    (["--set", "rbac.mode=namespaced"], "rbac.namespaces"),
    (["--set", "rbac.mode=everywhere"], "rbac.mode"),
    (["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
     "metrics.service.enabled"),
])
def test_templates_reject_without_the_schema(helm, args, needle):
    err = template_error(helm, "--skip-schema-validation", *args)
    assert needle in err, err
