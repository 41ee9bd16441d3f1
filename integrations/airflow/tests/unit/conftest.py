"""Fakes of the Kubernetes API for the provider's unit tests: no cluster, no Airflow database.

``FakeCluster`` stands in for the API server behind the sync hook (``CustomObjectsApi`` and
``CoreV1Api.read_namespaced_pod_log``, raising the kubernetes client's own ``ApiException``s) and behind the
async hook of the trigger.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import uuid
from datetime import UTC, datetime
from typing import Any

# Airflow reads its configuration at import: a scratch home, no examples, no database needed.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-unit-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

import pytest
from kubernetes.client.exceptions import ApiException

from dask_operator_provider.hooks.daskjob import AsyncDaskJobHook, DaskJobHook
from dask_operator_provider.triggers.daskjob import DaskJobTrigger
from dask_operator_provider.utils.daskjob import GROUP, PLURAL, VERSION


def api_error(status: int, message: str, reason: str = "") -> ApiException:
    e = ApiException(status=status, reason=reason or "Error")
    e.body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": status})
    return e


class FakeCluster:
    """DaskJobs and runner logs in memory, with the API server's error answers."""

    def __init__(self) -> None:
        self.namespaces = {"default", "ns"}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, ...]] = []
        self.create_error: ApiException | None = None
        self.get_errors: list[BaseException] = []  # raised by the next gets, in order
        self.reject: str | None = None  # a schema message: creates answer 422

    # -- helpers for tests
    def add(self, name: str, namespace: str = "ns", **status: Any) -> dict[str, Any]:
        obj = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DaskJob",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "labels": {},
                "annotations": {},
            },
            "spec": {},
            "status": dict(status),
        }
        self.jobs[(namespace, name)] = obj
        return obj

    def set_status(self, name: str, namespace: str = "ns", **status: Any) -> None:
        self.jobs[(namespace, name)]["status"].update(status)

    # -- CustomObjectsApi
    def _check(self, group: str, version: str, namespace: str, plural: str) -> None:
        assert (group, version, plural) == (GROUP, VERSION, PLURAL)
        if namespace not in self.namespaces:
            raise api_error(404, f'namespaces "{namespace}" not found', "Not Found")

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kw):
        self.calls.append(("create", namespace, body["metadata"]["name"]))
        self._check(group, version, namespace, plural)
        if self.create_error is not None:
            raise self.create_error
        name = body["metadata"]["name"]
        if self.reject:
            raise api_error(422, f'DaskJob.kubernetes.dask.org "{name}" is invalid: {self.reject}')
        if (namespace, name) in self.jobs:
            raise api_error(409, f'daskjobs.kubernetes.dask.org "{name}" already exists', "Conflict")
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            uid=str(uuid.uuid4()),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )
        obj.setdefault("status", {})
        self.jobs[(namespace, name)] = obj
        return copy.deepcopy(obj)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self.calls.append(("get", namespace, name))
        if self.get_errors:
            raise self.get_errors.pop(0)
        self._check(group, version, namespace, plural)
        if (namespace, name) not in self.jobs:
            raise api_error(404, f'daskjobs.kubernetes.dask.org "{name}" not found', "Not Found")
        return copy.deepcopy(self.jobs[(namespace, name)])

    def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector="", **kw):
        self.calls.append(("list", namespace, label_selector))
        self._check(group, version, namespace, plural)
        items = [
            copy.deepcopy(o)
            for (ns, _), o in self.jobs.items()
            if ns == namespace and _matches(o["metadata"].get("labels") or {}, label_selector)
        ]
        return {"items": items}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        self.calls.append(("delete", namespace, name))
        self._check(group, version, namespace, plural)
        if self.jobs.pop((namespace, name), None) is None:
            raise api_error(404, f'daskjobs.kubernetes.dask.org "{name}" not found', "Not Found")
        return {"status": "Success"}

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kw):
        self.calls.append(("patch", namespace, name))
        obj = self.jobs[(namespace, name)]
        obj["metadata"].setdefault("labels", {}).update(body["metadata"]["labels"])
        return copy.deepcopy(obj)

    # -- CoreV1Api
    def read_namespaced_pod_log(self, name, namespace, **kw):
        self.calls.append(("log", namespace, name))
        if (namespace, name) not in self.logs:
            raise api_error(404, f'pods "{name}" not found', "Not Found")
        text = self.logs[(namespace, name)]
        if kw.get("tail_lines"):
            text = "\n".join(text.splitlines()[-kw["tail_lines"] :])

        class Response:
            data = text.encode()

        return Response()


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
    return True


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(DaskJobHook, "custom_object_client", property(lambda self: fake))
    monkeypatch.setattr(DaskJobHook, "core_v1_client", property(lambda self: fake))
    monkeypatch.setattr(DaskJobHook, "get_namespace", lambda self: None)
    monkeypatch.setattr(DaskJobHook, "conn_extras", property(lambda self: {}))
    monkeypatch.setattr(DaskJobHook, "server", lambda self: "https://fake:6443")

    @contextlib.asynccontextmanager
    async def get_conn(self):
        yield fake

    async def get_daskjob_with(self, api_client, name, namespace):
        from dask_operator_provider.hooks.daskjob import describe_error

        try:
            return api_client.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except Exception as e:
            raise describe_error(e, action="get", namespace=namespace, name=name) from e

    async def delete_daskjob(self, name, namespace, propagation_policy="Foreground"):
        try:
            fake.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException:
            return False
        return True

    monkeypatch.setattr(AsyncDaskJobHook, "get_conn", get_conn)
    monkeypatch.setattr(AsyncDaskJobHook, "get_daskjob_with", get_daskjob_with)
    monkeypatch.setattr(AsyncDaskJobHook, "delete_daskjob", delete_daskjob)
    return fake


class FakeTI:
    """The task instance fields the operator reads, and the XComs it pushes."""

    def __init__(
        self,
        dag_id="dag",
        task_id="task",
        run_id="manual__2026-01-01T00:00:00+00:00",
        map_index=-1,
        try_number=1,
    ) -> None:
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id
        self.map_index = map_index
        self.try_number = try_number
        self.start_date = datetime.now(UTC)
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **kw: Any) -> None:
        self.xcoms[key] = value


@pytest.fixture
def ti() -> FakeTI:
    return FakeTI()


async def run_trigger(trigger: DaskJobTrigger) -> dict[str, Any]:
    """The first event of a trigger, rebuilt from its serialized form as the triggerer does."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    rebuilt = cls(**kwargs)
    gen = rebuilt.run()
    event = await gen.__anext__()
    await gen.aclose()
    return event.payload
