"""What the operator, sensor and trigger share, free of Airflow and of network calls.

The DaskJob manifest (from a dict, a YAML/JSON string, a file or a few arguments), its name and labels, the
verdict on a DaskJob's status, the parsing of ``status.result`` and the wording of failures.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import secrets
import string
from collections.abc import Mapping
from typing import Any

import yaml

GROUP = "kubernetes.dask.org"
VERSION = "v1"
PLURAL = "daskjobs"
KIND = "DaskJob"

#: ``status.jobStatus`` values written by dask-operator (as upstream dask-kubernetes).
JOB_CREATED = "JobCreated"
CLUSTER_CREATED = "ClusterCreated"
RUNNING = "Running"
SUCCESSFUL = "Successful"
FAILED = "Failed"
TERMINAL = frozenset({SUCCESSFUL, FAILED})

#: A DaskJob's name is also its DaskCluster's, whose ``<name>-scheduler`` Service must be a DNS-1035 label.
MAX_NAME_LENGTH = 53
NAME_BASE_LENGTH = 40
SUFFIX_LENGTH = 6

LABEL_PREFIX = "airflow.apache.org/"
LABEL_DAG_ID = LABEL_PREFIX + "dag-id"
LABEL_TASK_ID = LABEL_PREFIX + "task-id"
LABEL_RUN_ID = LABEL_PREFIX + "run-id"
LABEL_MAP_INDEX = LABEL_PREFIX + "map-index"
LABEL_TRY_NUMBER = LABEL_PREFIX + "try-number"
#: Set on a DaskJob whose outcome a task already reported: a later try never reattaches to it.
LABEL_FINISHED = LABEL_PREFIX + "finished"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "airflow-provider-dask-operator"
#: Labels that identify the task instance (without the try: a new try reattaches to an older try's job).
TI_IDENTITY_LABELS = (LABEL_DAG_ID, LABEL_TASK_ID, LABEL_RUN_ID, LABEL_MAP_INDEX)

CLEANUP_CHOICES = ("on_success", "always", "never")
ON_KILL_CHOICES = ("delete", "keep")
TEMPLATE_EXTENSIONS = (".yaml", ".yml", ".json")

_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class DaskJobInputError(ValueError):
    """The DaskJob asked for cannot be made: the task fails at once, without retries."""


# --------------------------------------------------------------------------------------------------
# The manifest


def load_job(job: Any, *, group: str = GROUP, version: str = VERSION) -> dict[str, Any]:
    """A full DaskJob manifest from a dict, a YAML or JSON string, or the path of such a file.

    A bare spec (a mapping with a ``job`` key and no ``kind``) is wrapped into a manifest. The result is a
    deep copy: the caller may change it.
    """
    if isinstance(job, str):
        text = job
        stripped = job.strip()
        if not stripped:
            raise DaskJobInputError(
                "job is an empty string: give a DaskJob as a dict, YAML text or file path"
            )
        if "\n" not in stripped and stripped.endswith(TEMPLATE_EXTENSIONS):
            if not os.path.isfile(stripped):
                raise DaskJobInputError(f"job file {stripped!r} does not exist")
            with open(stripped, encoding="utf-8") as f:
                text = f.read()
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            raise DaskJobInputError(f"job is not valid YAML or JSON: {e}") from e
        if len(docs) != 1:
            raise DaskJobInputError(f"job must hold exactly one YAML document, not {len(docs)}")
        job = docs[0]
    if not isinstance(job, Mapping):
        raise DaskJobInputError(
            f"job must be a DaskJob manifest (a mapping), not {type(job).__name__}: {_short(job)}"
        )
    manifest = copy.deepcopy(dict(job))
    if "kind" not in manifest and "apiVersion" not in manifest and "job" in manifest:
        manifest = {"spec": manifest}
    manifest.setdefault("apiVersion", f"{group}/{version}")
    manifest.setdefault("kind", KIND)
    if manifest["kind"] != KIND or manifest["apiVersion"] != f"{group}/{version}":
        raise DaskJobInputError(
            f"job is not a DaskJob: it is a {manifest['kind']} of apiVersion {manifest['apiVersion']}, "
            f"expected kind {KIND} of apiVersion {group}/{version}"
        )
    validate_spec(manifest)
    return manifest


def validate_spec(manifest: Mapping[str, Any]) -> None:
    """The checks that give a clearer message than the API server's schema would."""
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        raise DaskJobInputError("the DaskJob has no spec (a mapping with spec.job and spec.cluster)")
    runner = spec.get("job")
    if not isinstance(runner, Mapping) or not isinstance(runner.get("spec"), Mapping):
        raise DaskJobInputError("the DaskJob has no spec.job.spec (the runner pod's spec)")
    containers = runner["spec"].get("containers")
    if not isinstance(containers, list) or not containers:
        raise DaskJobInputError("the DaskJob's runner (spec.job.spec.containers) has no container")
    has_cluster = spec.get("cluster") is not None
    has_ref = spec.get("clusterRef") is not None
    if has_cluster == has_ref:
        raise DaskJobInputError(
            "the DaskJob needs exactly one of spec.cluster (a cluster made for the job) and "
            "spec.clusterRef (an existing DaskCluster)"
            + (", it has both" if has_cluster else ", it has neither")
        )
    if has_ref:
        ref = spec["clusterRef"]
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str) or not ref["name"]:
            raise DaskJobInputError("spec.clusterRef must be {name: <DaskCluster name>}")


def build_job(
    *,
    image: str,
    script: str | None = None,
    command: list[str] | None = None,
    workers: int = 2,
    resources: Mapping[str, Any] | None = None,
    cluster_ref: str | None = None,
    env: Mapping[str, str] | None = None,
    image_pull_policy: str = "IfNotPresent",
    worker_threads: int = 1,
) -> dict[str, Any]:
    """A DaskJob for the common case: one image, a Python script or a command, ``workers`` workers.

    ``resources`` (``{"requests": ..., "limits": ...}``) applies to the runner and the workers. With
    ``cluster_ref`` the job runs on that existing DaskCluster and ``workers``/``resources`` of the cluster are
    not used. The runner never restarts (``restartPolicy: Never``): its failure is the job's.
    """
    if not image or not isinstance(image, str):
        raise DaskJobInputError("image must be a container image name")
    if (script is None) == (command is None):
        raise DaskJobInputError("give exactly one of script (Python source) and command (a list of strings)")
    if command is not None and (
        not isinstance(command, list | tuple) or not command or not all(isinstance(c, str) for c in command)
    ):
        raise DaskJobInputError(f"command must be a non-empty list of strings, not {_short(command)}")
    if cluster_ref is None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise DaskJobInputError(f"workers must be a non-negative integer, not {workers!r}")
    args = ["python", "-c", script] if script is not None else list(command or [])
    runner: dict[str, Any] = {
        "name": "job",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "args": args,
    }
    if env:
        runner["env"] = [{"name": str(k), "value": str(v)} for k, v in env.items()]
    if resources:
        runner["resources"] = dict(resources)
    spec: dict[str, Any] = {
        "job": {
            "waitForScheduler": cluster_ref is None,
            "spec": {"restartPolicy": "Never", "containers": [runner]},
        }
    }
    if cluster_ref is not None:
        spec["clusterRef"] = {"name": cluster_ref}
    else:
        spec["cluster"] = {"spec": cluster_spec(image, workers, resources, image_pull_policy, worker_threads)}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {}, "spec": spec}


def cluster_spec(
    image: str,
    workers: int = 2,
    resources: Mapping[str, Any] | None = None,
    image_pull_policy: str = "IfNotPresent",
    worker_threads: int = 1,
    name: str = "",
) -> dict[str, Any]:
    """A DaskCluster spec as dask-kubernetes' examples write it (scheduler Service selector by ``name``)."""
    worker: dict[str, Any] = {
        "name": "worker",
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "args": [
            "dask-worker",
            "--name",
            "$(DASK_WORKER_NAME)",
            "--nthreads",
            str(worker_threads),
            "--dashboard-address",
            "8788",
        ],
        "ports": [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}],
    }
    if resources:
        worker["resources"] = dict(resources)
    probe = {"httpGet": {"port": "http-dashboard", "path": "/health"}}
    return {
        "worker": {"replicas": workers, "spec": {"containers": [worker]}},
        "scheduler": {
            "spec": {
                "containers": [
                    {
                        "name": "scheduler",
                        "image": image,
                        "imagePullPolicy": image_pull_policy,
                        "args": ["dask-scheduler"],
                        "ports": [
                            {"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                            {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"},
                        ],
                        "readinessProbe": {**probe, "initialDelaySeconds": 2, "periodSeconds": 2},
                        "livenessProbe": {**probe, "initialDelaySeconds": 15, "periodSeconds": 20},
                    }
                ]
            },
            "service": {
                "type": "ClusterIP",
                "selector": {"dask.org/cluster-name": name, "dask.org/component": "scheduler"},
                "ports": [
                    {"name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm"},
                    {
                        "name": "http-dashboard",
                        "protocol": "TCP",
                        "port": 8787,
                        "targetPort": "http-dashboard",
                    },
                ],
            },
        },
    }


def set_name(manifest: dict[str, Any], name: str) -> None:
    """Names the DaskJob, and points its own cluster's scheduler Service selector at that name."""
    metadata = manifest.setdefault("metadata", {})
    metadata["name"] = name
    metadata.pop("generateName", None)
    cluster = (manifest.get("spec") or {}).get("cluster") or {}
    service = ((cluster.get("spec") or {}).get("scheduler") or {}).get("service") or {}
    selector = service.get("selector")
    if isinstance(selector, dict) and "dask.org/cluster-name" in selector:
        selector["dask.org/cluster-name"] = name


# --------------------------------------------------------------------------------------------------
# Names and labels


def sanitize_name(text: str, max_length: int = NAME_BASE_LENGTH) -> str:
    """``text`` as the start of a DNS-1035 label: lower case, ``[a-z0-9-]``, starting with a letter."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    name = re.sub(r"-+", "-", name).lstrip("-0123456789")
    name = name[:max_length].rstrip("-")
    return name or "daskjob"


def unique_name(base: str) -> str:
    """``base`` (sanitised, at most 40 characters) and 6 random characters: a new name for each try."""
    alphabet = string.ascii_lowercase + string.digits
    suffix = "".join(secrets.choice(alphabet) for _ in range(SUFFIX_LENGTH))
    return f"{sanitize_name(base)}-{suffix}"


def check_name(name: str) -> None:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise DaskJobInputError(
            f"DaskJob name {name!r} is not valid: at most {MAX_NAME_LENGTH} characters of [a-z0-9-], "
            "starting with a letter and ending with a letter or digit (it also names the job's DaskCluster)"
        )


def safe_label_value(value: Any) -> str:
    """A label value for ``value``: itself when valid, else a sanitised prefix and a short hash."""
    text = str(value)
    if len(text) <= 63 and _LABEL_VALUE_RE.match(text):
        return text
    digest = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:8]
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:54].strip("-_.")
    return f"{cleaned}-{digest}" if cleaned else digest


def ti_identity(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> dict[str, str]:
    """The task instance's identity as exact strings (the annotations; labels are their safe values)."""
    return {
        LABEL_DAG_ID: str(dag_id),
        LABEL_TASK_ID: str(task_id),
        LABEL_RUN_ID: str(run_id),
        LABEL_MAP_INDEX: str(-1 if map_index is None else map_index),
    }


def _identity_label(key: str, value: str) -> str:
    # An unmapped task's map index, -1, is no valid label value.
    if key == LABEL_MAP_INDEX and value == "-1":
        return "none"
    return safe_label_value(value)


def ti_labels(identity: Mapping[str, str], try_number: int | None) -> dict[str, str]:
    labels = {k: _identity_label(k, v) for k, v in identity.items()}
    labels[LABEL_TRY_NUMBER] = str(try_number or 0)
    labels[LABEL_MANAGED_BY] = MANAGED_BY
    return labels


def identity_selector(identity: Mapping[str, str]) -> str:
    """Selects the not-yet-reported DaskJobs of a task instance, whatever their try."""
    parts = [f"{k}={_identity_label(k, identity[k])}" for k in TI_IDENTITY_LABELS]
    parts.append(f"{LABEL_FINISHED}!=true")
    return ",".join(parts)


def belongs_to(obj: Mapping[str, Any], identity: Mapping[str, str]) -> bool:
    """Whether a DaskJob was made for this task instance (exact values, from the annotations)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return all(annotations.get(k) == v for k, v in identity.items())


# --------------------------------------------------------------------------------------------------
# Status, events and results


def job_status(obj: Mapping[str, Any] | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("jobStatus")


def make_event(
    status: str,
    obj: Mapping[str, Any] | None,
    *,
    name: str,
    namespace: str,
    message: str = "",
) -> dict[str, Any]:
    """The one event shape of the trigger and of the synchronous wait; everything in it is JSON."""
    st = (obj or {}).get("status") or {}
    meta = (obj or {}).get("metadata") or {}
    return {
        "status": status,
        "name": name,
        "namespace": namespace,
        "uid": meta.get("uid"),
        "job_status": st.get("jobStatus"),
        "reason": st.get("reason"),
        "message": message or st.get("message") or "",
        "result": st.get("result"),
        "runner_pod": st.get("jobRunnerPodName"),
        "cluster_name": st.get("clusterName"),
        "start_time": st.get("startTime"),
        "end_time": st.get("endTime"),
    }


def verdict(
    obj: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    uid: str | None,
    now: float,
    deadline: float | None = None,
    startup_deadline: float | None = None,
) -> dict[str, Any] | None:
    """The event a DaskJob's current state calls for, or None while it should be waited for.

    ``deadline`` (from ``execution_timeout``) and ``startup_deadline`` (until ``Running``) are absolute epoch
    seconds, so that a restarted trigger keeps them.
    """
    got_uid = (obj.get("metadata") or {}).get("uid")
    if uid and got_uid and got_uid != uid:
        return make_event(
            "error",
            obj,
            name=name,
            namespace=namespace,
            message=f"DaskJob {namespace}/{name} was replaced by another object of the same name "
            f"(uid {got_uid}, expected {uid})",
        )
    status = job_status(obj)
    if status == SUCCESSFUL:
        return make_event("success", obj, name=name, namespace=namespace)
    if status == FAILED:
        return make_event("failed", obj, name=name, namespace=namespace)
    if deadline is not None and now >= deadline:
        return make_event(
            "timeout",
            obj,
            name=name,
            namespace=namespace,
            message=f"DaskJob {namespace}/{name} did not finish before the task's execution_timeout "
            f"(job status {status or 'none yet'})",
        )
    if startup_deadline is not None and now >= startup_deadline and status not in (RUNNING, *TERMINAL):
        cause = f": {_status_message(obj)}" if _status_message(obj) else ""
        return make_event(
            "timeout",
            obj,
            name=name,
            namespace=namespace,
            message=f"DaskJob {namespace}/{name} was not Running within startup_timeout_seconds "
            f"(job status {status or 'none yet'}{cause})",
        )
    return None


def _status_message(obj: Mapping[str, Any]) -> str:
    st = obj.get("status") or {}
    return " ".join(p for p in (st.get("reason"), st.get("message")) if p)


def parse_result(text: str | None) -> Any:
    """``status.result`` (the runner's termination message) as JSON when it is JSON, else as text."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def failure_message(event: Mapping[str, Any]) -> str:
    """Why the task fails, naming the DaskJob, its reason and message, and the runner's last words."""
    where = f"DaskJob {event.get('namespace')}/{event.get('name')}"
    status = event.get("status")
    reason = event.get("reason")
    message = event.get("message") or ""
    if status == "failed":
        text = f"{where} failed"
        if reason:
            text += f": {reason}"
        if message:
            text += f": {message}"
        result = event.get("result")
        if result and result not in message:
            text += f" (termination message: {_short(result, 500)})"
        return text
    if status == "timeout":
        return message or f"{where} timed out"
    return message or f"{where}: {status}"


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
