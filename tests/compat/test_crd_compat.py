"""Our four CRDs are a compatible superset of the ones shipped in the pinned dask-kubernetes wheel.

"Compatible superset" (docs: shared reference dask-kubernetes-compat.md, 1.1-1.4): every manifest that
the upstream CRDs accept must be accepted by ours, stored the same way (same defaults, nothing pruned
that upstream keeps), and shown the same way by kubectl (names, short names, printer columns, scale
subresource paths). Accepting *more* than upstream is fine; accepting *less* is not, except for the
few deliberate differences listed, each with its reason, in the allow-lists below.

Our CRDs come from running the operator (`$DASK_OPERATOR_BIN crd`, or `cargo run --quiet -- crd`);
upstream's from the wheel, downloaded once into the project's cache (see fetch_wheel.py).

Paths are written relative to `openAPIV3Schema`: `.` separates properties, `[]` stands for the items
of an array and `{}` for the values of a map (`additionalProperties`). In allow-list keys `*` matches
any run of characters, so one entry can cover a PodSpec field in every embedded PodSpec.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import yaml

from fetch_wheel import fetch_wheel, read_crd_texts

# The dask-kubernetes release whose CRDs we must stay compatible with.
DASK_KUBERNETES_VERSION = "2026.3.0"
# Known digests of that wheel on PyPI; a version missing here is downloaded without a digest check.
KNOWN_WHEEL_SHA256 = {
    "2026.3.0": "5cf138e03cb1851063b82b74e9fd4679251238e3867fcae1e3682aada6410728",
}

GROUP = "kubernetes.dask.org"
VERSION = "v1"
# kind -> file name in the wheel's crds/ directory.
KINDS = {
    "DaskCluster": "daskcluster.yaml",
    "DaskWorkerGroup": "daskworkergroup.yaml",
    "DaskJob": "daskjob.yaml",
    "DaskAutoscaler": "daskautoscaler.yaml",
}
# Upstream's short names, which ours must include (checked against the wheel too).
UPSTREAM_SHORT_NAMES = {
    "DaskCluster": {"daskcluster", "dsk"},
    "DaskWorkerGroup": {"daskworkers"},
    "DaskJob": {"djb"},
    "DaskAutoscaler": set(),
}
CATEGORY = "dask"
# Kinds whose scale subresource must also carry a labelSelectorPath (so that an HPA can use it).
KINDS_WITH_LABEL_SELECTOR = ("DaskCluster", "DaskWorkerGroup")
# etcd's default request limit is 1.5 MiB; keep a wide margin below it.
MAX_CRD_JSON_BYTES = 1_000_000

# --- Allow-lists: deliberate differences, {kind: {path pattern: reason}} -------------------------------
# Each entry must still match at least one real difference (test_allow_lists_are_not_stale), so that
# an entry is removed once the difference is gone.

_CLUSTER_NAME_REMOVED = (
    "ObjectMeta.clusterName was removed from Kubernetes in 1.25 and was never set or read by it; the "
    "PVC built from this template drops it on any current API server anyway"
)

# Upstream paths that our schema does not serve (a manifest using them has them pruned by ours).
ALLOWED_MISSING_PATHS: dict[str, dict[str, str]] = {
    "DaskCluster": {"*.volumes[].ephemeral.volumeClaimTemplate.metadata.clusterName": _CLUSTER_NAME_REMOVED},
    "DaskWorkerGroup": {"*.volumes[].ephemeral.volumeClaimTemplate.metadata.clusterName": _CLUSTER_NAME_REMOVED},
    "DaskJob": {
        "*.volumes[].ephemeral.volumeClaimTemplate.metadata.clusterName": _CLUSTER_NAME_REMOVED,
        "spec.cluster.status": "upstream embeds the whole DaskCluster schema, status included, as the job's "
        "cluster template but never reads it: only spec.cluster.{metadata,spec.scheduler,spec.worker} are "
        "copied into the DaskCluster it creates",
    },
}

_SPEC_REQUIRED = (
    "kube-rs's CustomResource derive requires `spec`; an object without it is unusable upstream too: "
    "its handlers fail with KeyError on spec['cluster'] / spec['job'] and kopf retries forever"
)
_HOST_ALIAS_IP = (
    "the current Kubernetes PodSpec requires it (HostAlias.ip is required, the key of the hostAliases "
    "list-map), and Pod validation rejects a host alias without a valid ip, so upstream only defers the failure"
)

# Fields that our schema requires and upstream's does not require at the same place.
ALLOWED_EXTRA_REQUIRED: dict[str, dict[str, str]] = {
    "DaskCluster": {"*.hostAliases[].ip": _HOST_ALIAS_IP},
    "DaskWorkerGroup": {"spec": _SPEC_REQUIRED, "*.hostAliases[].ip": _HOST_ALIAS_IP},
    "DaskJob": {
        "spec": _SPEC_REQUIRED,
        "spec.job.spec": "a runner without a pod spec cannot run: upstream accepts the DaskJob and then "
        "crashes in its create handler with KeyError('spec')",
        "*.hostAliases[].ip": _HOST_ALIAS_IP,
    },
    "DaskAutoscaler": {"spec": _SPEC_REQUIRED},
}

_NON_NEGATIVE_REPLICAS = (
    "deliberate `minimum: 0` (#[schemars(range(min = 0))]): a negative worker count is meaningless; upstream "
    "treats it as 0 (retires every worker), and Kubernetes' own Scale subresource rejects negative replicas"
)
_NON_NEGATIVE_IDLE_TIMEOUT = (
    "deliberate `minimum: 0`: upstream tests `if idleTimeout:`, so a negative value would delete the "
    "cluster at its first idle moment instead of disabling the timeout, which is almost certainly a mistake"
)
_NON_NEGATIVE_BOUNDS = "deliberate `minimum: 0`: negative worker bounds are meaningless (upstream clamps to them)"
_JOB_NAME = (
    "deliberate CEL rules on metadata.name, on create only (optionalOldSelf): the job's name is its "
    "DaskCluster's name, so one longer than 53 characters or not a DNS-1035 label makes a cluster that "
    "upstream sets to phase Error (or whose Service `<name>-scheduler` the API server rejects), and the "
    "job never runs; rejected at once instead (src/resources/names.rs)"
)
_GROUP_NAME = (
    "deliberate CEL rule on metadata.name, on create only (optionalOldSelf): the group's name is the value "
    "of the label dask.org/workergroup-name on every worker, so upstream fails to create any worker of a "
    "group named with more than 63 characters and retries forever (src/resources/names.rs)"
)
_CLUSTER_REFERENCE = (
    "deliberate CEL rules: spec.cluster must be a valid DaskCluster name (at most 53 characters, a "
    "DNS-1035 label); a cluster with another name never runs (upstream: phase Error), and a longer name "
    "does not fit the label dask.org/cluster-name of the workers (src/resources/names.rs)"
)

# Value constraints our schema adds where upstream has none (or a different one); keys are
# `path@keyword` (keyword: a JSON-schema keyword such as minimum, enum, pattern, format, nullable).
ALLOWED_ADDED_CONSTRAINTS: dict[str, dict[str, str]] = {
    "DaskCluster": {
        "spec.worker.replicas@minimum": _NON_NEGATIVE_REPLICAS,
        "spec.idleTimeout@minimum": _NON_NEGATIVE_IDLE_TIMEOUT,
    },
    "DaskWorkerGroup": {
        "spec.worker.replicas@minimum": _NON_NEGATIVE_REPLICAS,
        "@x-kubernetes-validations": _GROUP_NAME,
        "spec.cluster@x-kubernetes-validations": _CLUSTER_REFERENCE,
    },
    "DaskJob": {
        "spec.cluster.spec.worker.replicas@minimum": _NON_NEGATIVE_REPLICAS,
        "spec.cluster.spec.idleTimeout@minimum": _NON_NEGATIVE_IDLE_TIMEOUT,
        "@x-kubernetes-validations": _JOB_NAME,
        "spec@x-kubernetes-validations": (
            "rules on fields upstream does not have: exactly one of spec.cluster and spec.clusterRef (a "
            "manifest written for upstream always has spec.cluster, which upstream requires), clusterRef "
            "fixed for a job's life, cleanupPolicy only for a job's own cluster (docs/daskjob.md)"
        ),
    },
    "DaskAutoscaler": {
        "spec.minimum@minimum": _NON_NEGATIVE_BOUNDS,
        "spec.maximum@minimum": _NON_NEGATIVE_BOUNDS,
        "spec.cluster@x-kubernetes-validations": _CLUSTER_REFERENCE,
        "spec@x-kubernetes-validations": (
            "minimum <= maximum: upstream accepts inverted bounds and its autoscaler then scales to a value "
            "outside them (issue: DaskAutoscaler bad input); no working manifest has minimum > maximum"
        ),
    },
}

# --- Known gaps: genuine incompatibilities still to fix on the Rust side ----------------------------
# The schema tests above skip these paths; test_known_gap checks each gap under xfail(strict=True), so
# the suite stays green while the gap is visible, and turns red (XPASS) once the gap is fixed, when its
# entry must be removed. Patterns that no longer match anything are reported as stale too.


# Known incompatibilities still to fix: {gap id: {"difference", "paths": {kind: [patterns]}, "reason"}}.
# Each is an xfail(strict=True) test, so fixing one makes the suite fail until its entry is removed.
KNOWN_GAPS: dict[str, dict] = {}


# --- Fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream_crds() -> dict[str, dict]:
    wheel = fetch_wheel(DASK_KUBERNETES_VERSION, KNOWN_WHEEL_SHA256.get(DASK_KUBERNETES_VERSION))
    texts = read_crd_texts(wheel)
    assert set(texts) == set(KINDS.values()), (
        f"{wheel.name}: expected the CRD files {sorted(KINDS.values())}, found {sorted(texts)}"
    )
    crds = {}
    for kind, file_name in KINDS.items():
        crd = yaml.safe_load(texts[file_name])
        assert crd["spec"]["names"]["kind"] == kind, f"{wheel.name}: {file_name} is not the {kind} CRD"
        crds[kind] = crd
    return crds


@pytest.fixture(scope="module")
def crd_pairs(upstream_crds, our_crds) -> dict[str, tuple[dict, dict]]:
    """kind -> (upstream CRD, our CRD)."""
    assert set(our_crds) == set(KINDS), (
        f"`dask-operator crd` must print exactly the kinds {sorted(KINDS)}; it printed {sorted(our_crds)}"
    )
    for kind, crd in our_crds.items():
        assert served_version(crd) is not None, f"our {kind} CRD has no version {VERSION!r}"
    return {kind: (upstream_crds[kind], our_crds[kind]) for kind in KINDS}


# --- Schema walking --------------------------------------------------------------------------------


def child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def show(path: str) -> str:
    return path or "<root>"


def served_version(crd: dict, name: str = VERSION) -> dict | None:
    return next((v for v in crd["spec"]["versions"] if v["name"] == name), None)


def root_schema(crd: dict) -> dict:
    return served_version(crd)["schema"]["openAPIV3Schema"]


def is_untyped_preserve(node: dict) -> bool:
    """A node that accepts (and keeps) any value at all."""
    return bool(node.get("x-kubernetes-preserve-unknown-fields")) and "type" not in node


@dataclass
class Walk:
    """What walking upstream's schema alongside ours found."""

    pairs: list[tuple[str, dict, dict]]  # (path, upstream node, our node) for every path both have
    missing: list[str]  # upstream paths that ours neither declares nor preserves


def walk(upstream: dict, ours: dict) -> Walk:
    result = Walk(pairs=[], missing=[])

    def visit(path: str, up: dict, our: dict) -> None:
        result.pairs.append((path, up, our))
        if is_untyped_preserve(our):
            return  # everything below is accepted and kept as given
        preserves = bool(our.get("x-kubernetes-preserve-unknown-fields"))
        our_props = our.get("properties", {})
        for name, up_child in up.get("properties", {}).items():
            path_ = child_path(path, name)
            if name in our_props:
                visit(path_, up_child, our_props[name])
            elif not preserves:
                result.missing.append(path_)
        if "items" in up:
            if isinstance(our.get("items"), dict):
                visit(path + "[]", up["items"], our["items"])
            else:
                result.missing.append(path + "[]")
        up_ap = up.get("additionalProperties")
        if up_ap not in (None, False):
            our_ap = our.get("additionalProperties")
            if isinstance(up_ap, dict) and isinstance(our_ap, dict):
                visit(path + "{}", up_ap, our_ap)
            elif our_ap is True or preserves:
                pass  # ours keeps any value there
            else:
                result.missing.append(path + "{}")

    visit("", upstream, ours)
    return result


def same_value(a, b) -> bool:
    """JSON equality: 1 == 1.0, but True != 1 and "1" != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def type_problem(up: dict, our: dict) -> str | None:
    """Why `our` accepts fewer values than `up` as far as the type goes, or None."""
    if is_untyped_preserve(our):
        return None
    up_type, our_type = up.get("type"), our.get("type")
    our_ios = bool(our.get("x-kubernetes-int-or-string"))
    if up.get("x-kubernetes-int-or-string") and not our_ios:
        return f"upstream is int-or-string, ours is type {our_type!r} without x-kubernetes-int-or-string"
    if up_type is None or up_type == our_type:
        return None
    if up_type in ("string", "integer") and our_ios:
        return None  # the int-or-string fixes accept both
    if up_type == "integer" and our_type == "number":
        return None
    return f"upstream type {up_type!r}, ours {our_type!r}" + (" (int-or-string)" if our_ios else "")


# Keywords that restrict the values a schema node accepts.
CONSTRAINT_KEYWORDS = (
    "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "pattern",
    "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    "x-kubernetes-validations", "oneOf", "anyOf", "allOf", "not",
)
# String formats the Kubernetes API server validates (k8s.io/apiextensions-apiserver); others, such
# as int32 or int64, are documentation only.
VALIDATED_STRING_FORMATS = {
    "bsonobjectid", "uri", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "uuid3", "uuid4",
    "uuid5", "isbn", "isbn10", "isbn13", "creditcard", "ssn", "hexcolor", "rgbcolor", "byte", "password",
    "date", "duration", "datetime", "date-time",
}


def added_constraints(up: dict, our: dict) -> list[tuple[str, str]]:
    """(keyword, problem) for each constraint `our` adds over `up`."""
    found = []
    for key in CONSTRAINT_KEYWORDS:
        if key in our and not (key in up and same_value(up[key], our[key])):
            found.append((key, f"upstream {up.get(key, '<none>')!r}, ours {our[key]!r}"))
    our_format = our.get("format")
    if our.get("type") == "string" and our_format in VALIDATED_STRING_FORMATS and up.get("format") != our_format:
        found.append(("format", f"upstream {up.get('format', '<none>')!r}, ours {our_format!r}"))
    if up.get("nullable") and not our.get("nullable"):
        found.append(("nullable", "upstream true, ours false (null rejected)"))
    our_list_type = our.get("x-kubernetes-list-type")
    if our_list_type in ("set", "map"):
        up_keys = (up.get("x-kubernetes-list-type"), up.get("x-kubernetes-list-map-keys"))
        our_keys = (our_list_type, our.get("x-kubernetes-list-map-keys"))
        if up_keys != our_keys:
            found.append(("x-kubernetes-list-type", f"upstream {up_keys!r}, ours {our_keys!r} (uniqueness)"))
    return found


def node_at(schema: dict, path: str) -> dict | None:
    """The schema node at a path written as in this module (`a.b[].c{}`), or None."""
    node = schema
    for token in re.findall(r"[^.\[\]{}]+|\[\]|\{\}", path):
        if token == "[]":
            node = node.get("items")
        elif token == "{}":
            node = node.get("additionalProperties")
        else:
            node = node.get("properties", {}).get(token)
        if not isinstance(node, dict):
            return None
    return node


def pattern_regex(pattern: str) -> re.Pattern:
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)))


def allowed(allow_list: dict[str, dict[str, str]], kind: str, path: str) -> bool:
    return any(pattern_regex(p).fullmatch(path) for p in allow_list.get(kind, {}))


def known_gap_patterns(difference: str, kind: str) -> list[str]:
    return [p for gap in KNOWN_GAPS.values() if gap["difference"] == difference for p in gap["paths"].get(kind, [])]


def unexplained(difference: str, kind: str, found: list[tuple[str, str]], allow_list=None) -> list[str]:
    """The differences of one kind that neither an allow-list entry nor a known gap covers."""
    gaps = [pattern_regex(p) for p in known_gap_patterns(difference, kind)]
    return [
        f"{show(path)}{': ' + problem if problem else ''}"
        for path, problem in found
        if not (allow_list and allowed(allow_list, kind, path)) and not any(g.fullmatch(path) for g in gaps)
    ]


# --- The differences, computed once ----------------------------------------------------------------


@dataclass
class Differences:
    """kind -> [(path, problem)] for each sort of difference; problem is "" where the path says it all."""

    missing: dict[str, list[tuple[str, str]]]  # upstream paths ours does not serve
    types: dict[str, list[tuple[str, str]]]
    defaults: dict[str, list[tuple[str, str]]]
    extra_required: dict[str, list[tuple[str, str]]]  # paths of fields ours requires and upstream does not
    constraints: dict[str, list[tuple[str, str]]]

    def paths(self, difference: str, kind: str) -> list[str]:
        return [path for path, _ in getattr(self, difference).get(kind, [])]


@pytest.fixture(scope="module")
def differences(crd_pairs) -> Differences:
    diffs = Differences({}, {}, {}, {}, {})
    for kind, (upstream, ours) in crd_pairs.items():
        found = walk(root_schema(upstream), root_schema(ours))
        diffs.missing[kind] = [(path, "") for path in found.missing]
        diffs.types[kind] = []
        diffs.defaults[kind] = []
        diffs.extra_required[kind] = []
        diffs.constraints[kind] = []
        for path, up, our in found.pairs:
            problem = type_problem(up, our)
            if problem:
                diffs.types[kind].append((path, problem))
            if "default" in up and not ("default" in our and same_value(up["default"], our["default"])):
                diffs.defaults[kind].append(
                    (path, f"upstream default {up['default']!r}, ours {our.get('default', '<none>')!r}")
                )
            for name in our.get("required", []):
                if name not in up.get("required", []):
                    diffs.extra_required[kind].append((child_path(path, name), ""))
            for keyword, problem in added_constraints(up, our):
                diffs.constraints[kind].append((f"{path}@{keyword}", problem))
    return diffs


def report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


# --- 1. Names, group, version, scope ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_names_group_version_scope(kind, crd_pairs):
    upstream, ours = crd_pairs[kind]
    up_spec, our_spec = upstream["spec"], ours["spec"]
    up_names, our_names = up_spec["names"], our_spec["names"]
    problems = []

    def expect(what, up_value, our_value):
        if up_value != our_value:
            problems.append(f"{what}: upstream {up_value!r}, ours {our_value!r}")

    expect("metadata.name", upstream["metadata"]["name"], ours["metadata"]["name"])
    expect("spec.group", up_spec["group"], our_spec["group"])
    expect("spec.group (expected)", GROUP, our_spec["group"])
    expect("spec.scope", up_spec["scope"], our_spec["scope"])
    expect("spec.scope (expected)", "Namespaced", our_spec["scope"])
    for key in ("kind", "plural", "singular"):
        expect(f"spec.names.{key}", up_names.get(key), our_names.get(key))
    expect("spec.names.listKind", up_names.get("listKind", kind + "List"), our_names.get("listKind", kind + "List"))

    up_short, our_short = set(up_names.get("shortNames", [])), set(our_names.get("shortNames", []))
    expect("upstream spec.names.shortNames (pinned in this test)", UPSTREAM_SHORT_NAMES[kind], up_short)
    if not up_short <= our_short:
        problems.append(f"spec.names.shortNames: missing {sorted(up_short - our_short)} (ours {sorted(our_short)})")
    if CATEGORY not in our_names.get("categories", []):
        problems.append(f"spec.names.categories: {CATEGORY!r} missing (ours {our_names.get('categories')})")

    up_versions = [(v["name"], v.get("served"), v.get("storage")) for v in up_spec["versions"]]
    expect("upstream versions (name, served, storage)", [(VERSION, True, True)], up_versions)
    ours_v1 = served_version(ours)
    if ours_v1 is None:
        problems.append(f"spec.versions: no {VERSION} (ours {[v['name'] for v in our_spec['versions']]})")
    else:
        expect(f"spec.versions[{VERSION}].served", True, ours_v1.get("served"))
        expect(f"spec.versions[{VERSION}].storage", True, ours_v1.get("storage"))
    storage = [v["name"] for v in our_spec["versions"] if v.get("storage")]
    expect("storage versions", [VERSION], storage)

    assert not problems, report(f"{kind}: names/group/version/scope differ from upstream", problems)


# --- 2. Printer columns ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns(kind, crd_pairs):
    upstream, ours = crd_pairs[kind]

    def columns(crd):
        return [(c["name"], c["jsonPath"], c["type"]) for c in served_version(crd).get("additionalPrinterColumns", [])]

    up_columns, our_columns = columns(upstream), columns(ours)
    assert up_columns, f"{kind}: upstream has no printer columns; is the wheel the expected one?"
    missing = [f"name={n!r} jsonPath={j!r} type={t!r}" for n, j, t in up_columns if (n, j, t) not in our_columns]
    assert not missing, report(
        f"{kind}: upstream printer columns missing from ours (ours: {our_columns})", missing
    )


# --- 3. Subresources -------------------------------------------------------------------------------


def schema_path_of_json_path(json_path: str) -> str:
    """`.status.replicas` -> `status.replicas` (simple field paths only)."""
    assert re.fullmatch(r"(\.[A-Za-z0-9_]+)+", json_path), f"unsupported JSON path {json_path!r}"
    return json_path[1:]


@pytest.mark.parametrize("kind", KINDS)
def test_subresources(kind, crd_pairs):
    upstream, ours = crd_pairs[kind]
    up_sub = served_version(upstream).get("subresources") or {}
    our_sub = served_version(ours).get("subresources") or {}
    our_schema = root_schema(ours)
    problems = []

    if "status" not in our_sub:
        problems.append(f"subresources.status: missing (ours {our_sub!r})")
    up_scale, our_scale = up_sub.get("scale"), our_sub.get("scale")
    if up_scale is not None:
        if our_scale is None:
            problems.append(f"subresources.scale: missing (upstream {up_scale!r})")
        else:
            for key in ("specReplicasPath", "statusReplicasPath"):
                if up_scale.get(key) != our_scale.get(key):
                    problems.append(f"subresources.scale.{key}: upstream {up_scale.get(key)!r}, ours {our_scale.get(key)!r}")
    if kind in KINDS_WITH_LABEL_SELECTOR and not (our_scale or {}).get("labelSelectorPath"):
        problems.append(f"subresources.scale.labelSelectorPath: missing (ours {our_scale!r})")
    # Every path the scale subresource names must exist in our schema with the right type.
    expected_types = {"specReplicasPath": "integer", "statusReplicasPath": "integer", "labelSelectorPath": "string"}
    for key, expected_type in expected_types.items():
        json_path = (our_scale or {}).get(key)
        if json_path:
            node = node_at(our_schema, schema_path_of_json_path(json_path))
            if node is None or node.get("type") != expected_type:
                problems.append(
                    f"subresources.scale.{key} {json_path!r}: our schema has "
                    f"{'no such field' if node is None else 'type ' + repr(node.get('type'))}, expected {expected_type}"
                )

    assert not problems, report(f"{kind}: subresources differ from what is required", problems)


# --- 4. Schema superset ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_schema_has_every_upstream_path(kind, differences):
    missing = unexplained("missing", kind, differences.missing[kind], ALLOWED_MISSING_PATHS)
    assert not missing, report(
        f"{kind}: upstream schema paths that ours neither declares nor preserves (values there would be "
        f"pruned); serve them or add them to ALLOWED_MISSING_PATHS with a reason",
        missing,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_schema_types_are_compatible(kind, differences):
    wrong = unexplained("types", kind, differences.types[kind])
    assert not wrong, report(f"{kind}: paths where our type accepts less than upstream's", wrong)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_defaults_match(kind, differences):
    wrong = unexplained("defaults", kind, differences.defaults[kind])
    assert not wrong, report(f"{kind}: upstream defaults that ours lacks or changes", wrong)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_requires_nothing_more(kind, differences):
    extra = unexplained("extra_required", kind, differences.extra_required[kind], ALLOWED_EXTRA_REQUIRED)
    assert not extra, report(
        f"{kind}: fields ours requires and upstream does not (manifests without them would be rejected); "
        f"drop the requirement or add them to ALLOWED_EXTRA_REQUIRED with a reason",
        extra,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_schema_adds_no_constraints(kind, differences):
    added = unexplained("constraints", kind, differences.constraints[kind], ALLOWED_ADDED_CONSTRAINTS)
    assert not added, report(
        f"{kind}: value constraints ours adds over upstream (values upstream accepts would be rejected); "
        f"drop them or add them to ALLOWED_ADDED_CONSTRAINTS with a reason",
        added,
    )


# Defined only while there are gaps (an empty parametrization would report a skipped test).
if KNOWN_GAPS:

    @pytest.mark.parametrize(
        "gap",
        [pytest.param(gap, id=gap, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[gap]["reason"])) for gap in KNOWN_GAPS],
    )
    def test_known_gap(gap, differences):
        """Fails while the gap exists (xfail); XPASS, a failure under strict, means: remove the entry."""
        spec = KNOWN_GAPS[gap]
        still = [
            f"{kind} {path}"
            for kind, patterns in spec["paths"].items()
            for path in differences.paths(spec["difference"], kind)
            if any(pattern_regex(p).fullmatch(path) for p in patterns)
        ]
        assert not still, report(f"known gap {gap!r} ({spec['difference']}) still present", still)


def test_allow_lists_are_not_stale(differences):
    entries = [
        ("ALLOWED_MISSING_PATHS", "missing", ALLOWED_MISSING_PATHS),
        ("ALLOWED_EXTRA_REQUIRED", "extra_required", ALLOWED_EXTRA_REQUIRED),
        ("ALLOWED_ADDED_CONSTRAINTS", "constraints", ALLOWED_ADDED_CONSTRAINTS),
    ] + [(f"KNOWN_GAPS[{gap!r}]", spec["difference"], spec["paths"]) for gap, spec in KNOWN_GAPS.items()]
    stale = []
    for list_name, difference, allow_list in entries:
        for kind, patterns in allow_list.items():
            assert kind in KINDS, f"{list_name}: unknown kind {kind!r}"
            found = differences.paths(difference, kind)
            for pattern in patterns:
                if not any(pattern_regex(pattern).fullmatch(path) for path in found):
                    stale.append(f"{list_name}[{kind!r}][{pattern!r}]")
    assert not stale, report("allow-list entries that no longer match any difference; remove them", stale)


# --- 5. Specific defaults --------------------------------------------------------------------------

SPECIFIC_DEFAULTS = [
    ("DaskCluster", "spec.worker.replicas", 1),
    ("DaskWorkerGroup", "spec.worker.replicas", 1),
    ("DaskJob", "spec.cluster.spec.worker.replicas", 1),
    ("DaskCluster", "spec.idleTimeout", 0),
    ("DaskJob", "spec.cluster.spec.idleTimeout", 0),
    ("DaskJob", "spec.job.spec.restartPolicy", "OnFailure"),
]


@pytest.mark.parametrize(("kind", "path", "value"), SPECIFIC_DEFAULTS, ids=[f"{k}:{p}" for k, p, _ in SPECIFIC_DEFAULTS])
def test_specific_default(kind, path, value, crd_pairs):
    upstream, ours = crd_pairs[kind]
    up_node, our_node = node_at(root_schema(upstream), path), node_at(root_schema(ours), path)
    assert up_node is not None and same_value(up_node.get("default"), value), (
        f"{kind} {path}: upstream default is {None if up_node is None else up_node.get('default')!r}, "
        f"this test expects {value!r}; is the wheel the expected one?"
    )
    assert our_node is not None, f"{kind} {path}: not in our schema"
    assert "default" in our_node and same_value(our_node["default"], value), (
        f"{kind} {path}: our default is {our_node.get('default', '<none>')!r}, upstream's {value!r}"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_ports_protocol_defaults_to_tcp(kind, crd_pairs):
    upstream, ours = crd_pairs[kind]
    up_root, our_root = root_schema(upstream), root_schema(ours)
    up_paths = [p for p, up, _ in walk(up_root, up_root).pairs if p.endswith("ports[].protocol") and up.get("default") == "TCP"]
    if kind != "DaskAutoscaler":
        assert up_paths, f"{kind}: upstream has no ports[].protocol default TCP; is the wheel the expected one?"
    wrong = []
    for path in up_paths:
        node = node_at(our_root, path)
        if node is None or node.get("default") != "TCP":
            wrong.append(f"{path}: ours {'missing' if node is None else repr(node.get('default', '<none>'))}")
    assert not wrong, report(f"{kind}: ports[].protocol paths where upstream defaults to TCP and ours does not", wrong)


# --- 6. Size ---------------------------------------------------------------------------------------


def test_crd_sizes(our_crds):
    sizes = {kind: len(json.dumps(crd, separators=(",", ":")).encode()) for kind, crd in our_crds.items()}
    summary = ", ".join(f"{kind} {size:,} B" for kind, size in sizes.items())
    too_big = [kind for kind, size in sizes.items() if size >= MAX_CRD_JSON_BYTES]
    assert not too_big, f"CRDs at or over {MAX_CRD_JSON_BYTES:,} bytes as JSON: {too_big} (sizes: {summary})"


def test_example_manifests_are_upstreams_unchanged():
    """tests/fixtures holds upstream's example manifests, which the integration tests apply as they are."""
    import zipfile
    from pathlib import Path

    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    wheel = fetch_wheel(DASK_KUBERNETES_VERSION, KNOWN_WHEEL_SHA256.get(DASK_KUBERNETES_VERSION))
    prefix = "dask_kubernetes/operator/controller/tests/resources/"
    with zipfile.ZipFile(wheel) as zf:
        for name in ("simplecluster.yaml", "simpleworkergroup.yaml", "simplejob.yaml", "failedjob.yaml"):
            assert (fixtures / name).read_text() == zf.read(prefix + name).decode(), f"tests/fixtures/{name} differs"
