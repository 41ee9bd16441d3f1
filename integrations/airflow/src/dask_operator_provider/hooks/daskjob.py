"""DaskJob calls on the cncf-kubernetes provider's hooks and its ``kubernetes`` connection."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml
from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
from kubernetes.client.exceptions import ApiException

from dask_operator_provider.utils.daskjob import GROUP, LABEL_FINISHED, PLURAL, VERSION

#: (connect, read) seconds for every synchronous call: an unreachable API server fails the task at once.
REQUEST_TIMEOUT = (10, 60)


class DaskJobApiError(Exception):
    """A Kubernetes API call about a DaskJob failed; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


def api_message(exc: BaseException) -> str:
    """The API server's own message for an ApiException (its Status body), else the exception's text."""
    body = getattr(exc, "body", None)
    if body:
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        try:
            status = yaml.safe_load(body)
        except yaml.YAMLError:
            status = None
        if isinstance(status, Mapping) and status.get("message"):
            return str(status["message"])
        return str(body)[:500]
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def describe_error(
    exc: BaseException,
    *,
    action: str,
    namespace: str,
    name: str | None = None,
    server: str | None = None,
    group: str = GROUP,
    version: str = VERSION,
) -> DaskJobApiError:
    """A DaskJobApiError that names the cause (missing namespace, no CRD, schema, RBAC, unreachable)."""
    what = f"DaskJob {namespace}/{name}" if name else f"DaskJobs in namespace {namespace}"
    status = getattr(exc, "status", None)
    if isinstance(exc, ApiException) or (status is not None and hasattr(exc, "body")):
        msg = api_message(exc)
        if status == 404 and f'namespaces "{namespace}" not found' in msg:
            return DaskJobApiError(
                f"cannot {action} {what}: namespace {namespace!r} does not exist", status=404, permanent=True
            )
        if status == 404 and action == "create":
            return DaskJobApiError(
                f"cannot {action} {what}: the API server does not serve {PLURAL}.{group}/{version} "
                f"(is the DaskJob CRD installed?): {msg}",
                status=404,
                permanent=True,
            )
        if status == 404:
            return DaskJobApiError(f"{what} does not exist: {msg}", status=404, permanent=True)
        if status == 422 or status == 400:
            return DaskJobApiError(
                f"cannot {action} {what}: rejected by the API server: {msg}", status=status, permanent=True
            )
        if status in (401, 403):
            return DaskJobApiError(
                f"cannot {action} {what}: not allowed: {msg}", status=status, permanent=True
            )
        if status == 409:
            return DaskJobApiError(f"cannot {action} {what}: {msg}", status=409, permanent=True)
        if status == 0 or status is None:
            # kubernetes_asyncio reports a connection failure as ApiException(status=0)
            return DaskJobApiError(
                f"cannot {action} {what}: cannot reach the Kubernetes API server"
                f"{' at ' + server if server else ''}: {msg}"
            )
        return DaskJobApiError(f"cannot {action} {what}: HTTP {status}: {msg}", status=status)
    return DaskJobApiError(
        f"cannot {action} {what}: cannot reach the Kubernetes API server"
        f"{' at ' + server if server else ''}: {type(exc).__name__}: {exc}"
    )


class DaskJobHook(KubernetesHook):
    """KubernetesHook with DaskJob calls; every failure is a :class:`DaskJobApiError` naming its cause."""

    hook_name = "Kubernetes (DaskJob)"

    def __init__(self, *args: Any, api_group: str = GROUP, api_version: str = VERSION, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api_group = api_group
        self.api_version = api_version

    @classmethod
    def for_task(cls, task: Any) -> DaskJobHook:
        """The hook of a DaskJobOperator or DaskJobSensor, from the connection settings they share."""
        return cls(
            conn_id=task.kubernetes_conn_id,
            config_file=task.config_file,
            cluster_context=task.cluster_context,
            in_cluster=task.in_cluster,
            api_group=task.api_group,
            api_version=task.api_version,
        )

    # The server's address, for messages.
    def server(self) -> str | None:
        try:
            return str(self.api_client.configuration.host)
        except Exception:
            return None

    def _call(self, action: str, namespace: str, name: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except Exception as e:
            raise describe_error(
                e,
                action=action,
                namespace=namespace,
                name=name,
                server=self.server(),
                group=self.api_group,
                version=self.api_version,
            ) from e

    def create_daskjob(self, body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        api = self.custom_object_client
        name = (body.get("metadata") or {}).get("name")
        return self._call(
            "create",
            namespace,
            name,
            api.create_namespaced_custom_object,
            self.api_group,
            self.api_version,
            namespace,
            PLURAL,
            dict(body),
        )

    def get_daskjob(self, name: str, namespace: str) -> dict[str, Any]:
        api = self.custom_object_client
        return self._call(
            "get",
            namespace,
            name,
            api.get_namespaced_custom_object,
            self.api_group,
            self.api_version,
            namespace,
            PLURAL,
            name,
        )

    def list_daskjobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        api = self.custom_object_client
        listing = self._call(
            "list",
            namespace,
            None,
            api.list_namespaced_custom_object,
            self.api_group,
            self.api_version,
            namespace,
            PLURAL,
            label_selector=label_selector,
        )
        return list(listing.get("items") or [])

    def delete_daskjob(self, name: str, namespace: str, propagation_policy: str = "Foreground") -> bool:
        """Deletes the DaskJob (and, through ownerReferences, its cluster and pods); False if it was gone."""
        api = self.custom_object_client
        try:
            self._call(
                "delete",
                namespace,
                name,
                api.delete_namespaced_custom_object,
                self.api_group,
                self.api_version,
                namespace,
                PLURAL,
                name,
                propagation_policy=propagation_policy,
            )
        except DaskJobApiError as e:
            if e.status == 404:
                return False
            raise
        return True

    def mark_finished(self, name: str, namespace: str) -> None:
        """Labels a kept DaskJob as reported, so that no later try of the task reattaches to it."""
        api = self.custom_object_client
        self._call(
            "label",
            namespace,
            name,
            api.patch_namespaced_custom_object,
            self.api_group,
            self.api_version,
            namespace,
            PLURAL,
            name,
            {"metadata": {"labels": {LABEL_FINISHED: "true"}}},
        )

    def read_pod_log(self, pod: str, namespace: str, tail_lines: int | None = None) -> str:
        """The pod's log (its first container), decoded with replacement of invalid bytes."""
        kwargs: dict[str, Any] = {"_preload_content": False}
        if tail_lines:
            kwargs["tail_lines"] = tail_lines
        response = self._call(
            "read the log of",
            namespace,
            pod,
            self.core_v1_client.read_namespaced_pod_log,
            pod,
            namespace,
            **kwargs,
        )
        data = response.data if hasattr(response, "data") else response
        if isinstance(data, bytes):
            return data.decode("utf-8", "replace")
        return str(data)

    def kubeconfig_for_trigger(self, config_file: str | None = None) -> tuple[dict | None, dict | None]:
        """What a trigger needs to reach the same cluster from another machine.

        Returns ``(config_dict, connection_extras)``: a kubeconfig file (the operator's ``config_file`` or
        the connection's ``kube_config_path``) is shipped as its content, since the triggerer may not have
        the file (apache/airflow#29488); the other extras are shipped as resolved on the worker.
        """
        extras = dict(self.conn_extras or {})
        path = (
            config_file or extras.get("kube_config_path") or extras.get("extra__kubernetes__kube_config_path")
        )
        if not path:
            return None, extras
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            config_dict = yaml.safe_load(f)
        for key in ("kube_config_path", "extra__kubernetes__kube_config_path"):
            extras.pop(key, None)
        return config_dict, extras


class AsyncDaskJobHook(AsyncKubernetesHook):
    """AsyncKubernetesHook with DaskJob calls through ``kubernetes_asyncio`` (no blocking calls)."""

    def __init__(self, *args: Any, api_group: str = GROUP, api_version: str = VERSION, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api_group = api_group
        self.api_version = api_version

    async def get_daskjob_with(self, api_client: Any, name: str, namespace: str) -> dict[str, Any]:
        from kubernetes_asyncio.client import CustomObjectsApi

        try:
            return await CustomObjectsApi(api_client).get_namespaced_custom_object(
                self.api_group, self.api_version, namespace, PLURAL, name
            )
        except Exception as e:
            raise describe_error(
                e,
                action="get",
                namespace=namespace,
                name=name,
                group=self.api_group,
                version=self.api_version,
            ) from e

    async def delete_daskjob(self, name: str, namespace: str, propagation_policy: str = "Foreground") -> bool:
        from kubernetes_asyncio.client import CustomObjectsApi, V1DeleteOptions

        async with self.get_conn() as api_client:
            try:
                await CustomObjectsApi(api_client).delete_namespaced_custom_object(
                    self.api_group,
                    self.api_version,
                    namespace,
                    PLURAL,
                    name,
                    body=V1DeleteOptions(propagation_policy=propagation_policy),
                )
            except Exception as e:
                err = describe_error(e, action="delete", namespace=namespace, name=name)
                if err.status == 404:
                    return False
                raise err from e
        return True
