"""DaskJobTrigger: waits for a DaskJob to end, in the triggerer, with no blocking call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_3_PLUS
from airflow.triggers.base import BaseTrigger, TriggerEvent

from dask_operator_provider.hooks.daskjob import AsyncDaskJobHook, DaskJobApiError
from dask_operator_provider.utils.daskjob import GROUP, VERSION, make_event, verdict


class DaskJobTrigger(BaseTrigger):
    """Polls a DaskJob until it is ``Successful`` or ``Failed``, or a deadline passes; fires one event.

    The event is ``{status: success|failed|timeout|error, name, namespace, uid, job_status, reason, message,
    result, runner_pod, cluster_name, start_time, end_time}``: it carries the verdict and the result, so that
    the task can finish even if the DaskJob is gone by then.

    :param name: the DaskJob's name.
    :param namespace: its namespace.
    :param uid: its ``metadata.uid``; another object of the same name is an error, never a success.
    :param kubernetes_conn_id: the ``kubernetes`` connection, resolved in the triggerer when
        ``connection_extras`` is None.
    :param config_dict: the kubeconfig's content (shipped from the worker instead of a file path).
    :param connection_extras: the connection's extras as resolved on the worker.
    :param deadline: absolute epoch seconds at which the task's ``execution_timeout`` ends.
    :param startup_deadline: absolute epoch seconds by which the DaskJob must be ``Running``.
    :param poll_interval: seconds between two reads of the DaskJob.
    :param transient_error_seconds: how long transient API errors in a row (an API server restarting, a
        connection refused, HTTP 5xx) are retried before an ``error`` event.
    :param on_kill_action: ``delete`` deletes the DaskJob when the task is killed while deferred (Airflow
        3.3+: ``on_kill``; before: ``cleanup`` once the task is no longer deferred), ``keep`` never does.
    """

    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        uid: str | None = None,
        kubernetes_conn_id: str | None = None,
        config_dict: dict | None = None,
        connection_extras: dict | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        api_group: str = GROUP,
        api_version: str = VERSION,
        deadline: float | None = None,
        startup_deadline: float | None = None,
        poll_interval: float = 10.0,
        transient_error_seconds: float = 120.0,
        on_kill_action: str = "delete",
    ) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_dict = config_dict
        self.connection_extras = connection_extras
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.api_group = api_group
        self.api_version = api_version
        self.deadline = deadline
        self.startup_deadline = startup_deadline
        self.poll_interval = poll_interval
        self.transient_error_seconds = transient_error_seconds
        self.on_kill_action = on_kill_action
        self._fired_event = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "config_dict": self.config_dict,
                "connection_extras": self.connection_extras,
                "cluster_context": self.cluster_context,
                "in_cluster": self.in_cluster,
                "api_group": self.api_group,
                "api_version": self.api_version,
                "deadline": self.deadline,
                "startup_deadline": self.startup_deadline,
                "poll_interval": self.poll_interval,
                "transient_error_seconds": self.transient_error_seconds,
                "on_kill_action": self.on_kill_action,
            },
        )

    @property
    def hook(self) -> AsyncDaskJobHook:
        return AsyncDaskJobHook(
            conn_id=self.kubernetes_conn_id,
            config_dict=self.config_dict,
            connection_extras=self.connection_extras,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
            api_group=self.api_group,
            api_version=self.api_version,
        )

    def _event(self, status: str, obj: dict | None = None, message: str = "") -> TriggerEvent:
        self._fired_event = True
        return TriggerEvent(
            make_event(status, obj, name=self.name, namespace=self.namespace, message=message)
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        where = f"DaskJob {self.namespace}/{self.name}"
        failing_since: float | None = None  # the first of the transient errors in a row
        last: dict | None = None
        hook = self.hook
        try:
            async with hook.get_conn() as api_client:
                while True:
                    try:
                        obj = await hook.get_daskjob_with(api_client, self.name, self.namespace)
                    except DaskJobApiError as e:
                        if e.status == 404:
                            yield self._event(
                                "error",
                                last,
                                f"{where} was deleted before it finished (last status: "
                                f"{(last or {}).get('status', {}).get('jobStatus') or 'unknown'})",
                            )
                            return
                        now = time.time()
                        failing_since = failing_since or now
                        if e.permanent or now - failing_since >= self.transient_error_seconds:
                            yield self._event("error", last, f"{where}: {e}")
                            return
                        self.log.warning(
                            "%s (retrying for %.0fs more)",
                            e,
                            self.transient_error_seconds - (now - failing_since),
                        )
                    else:
                        failing_since = None
                        last = obj
                        event = verdict(
                            obj,
                            name=self.name,
                            namespace=self.namespace,
                            uid=self.uid,
                            now=time.time(),
                            deadline=self.deadline,
                            startup_deadline=self.startup_deadline,
                        )
                        if event is not None:
                            self._fired_event = True
                            yield TriggerEvent(event)
                            return
                        self.log.debug("%s is %s", where, (obj.get("status") or {}).get("jobStatus"))
                    await asyncio.sleep(self._sleep_for())
        except Exception as e:  # a configuration that cannot be loaded, a client that cannot be made
            if self._fired_event:
                raise
            yield self._event("error", last, f"{where}: {type(e).__name__}: {e}")

    def _sleep_for(self) -> float:
        """The poll interval, cut short so that a deadline is noticed when it passes."""
        wait = float(self.poll_interval)
        now = time.time()
        for deadline in (self.deadline, self.startup_deadline):
            if deadline is not None:
                wait = min(wait, max(deadline - now, 0.0) + 0.1)
        return max(wait, 0.1)

    async def _delete(self, why: str) -> None:
        self.log.info("Deleting DaskJob %s/%s: %s", self.namespace, self.name, why)
        try:
            await self.hook.delete_daskjob(self.name, self.namespace)
        except Exception:
            self.log.exception("Could not delete DaskJob %s/%s", self.namespace, self.name)

    async def on_kill(self) -> None:
        """Airflow 3.3+: the task was killed by a user while deferred (not a triggerer restart)."""
        if self._fired_event or self.on_kill_action != "delete":
            return
        await self._delete("the task was killed while deferred")

    async def cleanup(self) -> None:
        """Before Airflow 3.3 the triggerer calls no ``on_kill``: delete here, but only when the task is
        no longer deferred (a user kill), never on a triggerer restart or when the task can't be looked up."""
        if AIRFLOW_V_3_3_PLUS or self._fired_event or self.on_kill_action != "delete":
            return
        try:
            state = await self._task_state()
        except Exception:
            self.log.warning("Could not read the task's state; keeping the DaskJob", exc_info=True)
            return
        if state is None or str(state).lower() == "deferred" or str(state).endswith(".DEFERRED"):
            return
        await self._delete(f"the task is {state} while its trigger was cancelled")

    async def _task_state(self) -> Any:
        ti = self.task_instance
        if ti is None:
            return None
        from asgiref.sync import sync_to_async

        if AIRFLOW_V_3_0_PLUS:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
            )
            key = f"{ti.task_id}_{ti.map_index}" if ti.map_index >= 0 else ti.task_id
            return states.get(ti.run_id, {}).get(key)

        def read_state() -> Any:
            from airflow.models.taskinstance import TaskInstance
            from airflow.utils.session import create_session

            with create_session() as session:
                return (
                    session.query(TaskInstance.state)
                    .filter_by(dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)
                    .scalar()
                )

        return await sync_to_async(read_state)()
