"""DaskJobSensor: waits for an existing DaskJob to end; never deletes it."""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from dask_operator_provider.hooks.daskjob import DaskJobApiError, DaskJobHook
from dask_operator_provider.triggers.daskjob import DaskJobTrigger
from dask_operator_provider.utils.daskjob import (
    FAILED,
    GROUP,
    SUCCESSFUL,
    VERSION,
    failure_message,
    job_status,
    make_event,
    parse_result,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class DaskJobSensor(BaseSensorOperator):
    """Waits until the DaskJob ``name`` is ``Successful`` (its result, parsed as JSON when it is JSON, is
    the return value) and fails with its reason and message when it is ``Failed`` or gone.

    It waits by poking (``mode="poke"``/``"reschedule"``) or in the triggerer (``deferrable=True``), and
    never deletes the DaskJob, also when killed.

    :param name: the DaskJob's name (templated).
    :param namespace: its namespace (templated); default the connection's, then ``default``.
    :param attach_log: copy the runner pod's log into the task log once the job ended.
    """

    template_fields: Sequence[str] = ("name", "namespace", "kubernetes_conn_id")

    def __init__(
        self,
        *,
        name: str,
        namespace: str | None = None,
        kubernetes_conn_id: str | None = "kubernetes_default",
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        api_group: str = GROUP,
        api_version: str = VERSION,
        attach_log: bool = True,
        log_tail_lines: int | None = 1000,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not name and "{{" not in str(name):
            raise AirflowFailException("DaskJobSensor needs the name of a DaskJob")
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.api_group = api_group
        self.api_version = api_version
        self.attach_log = attach_log
        self.log_tail_lines = log_tail_lines
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> DaskJobHook:
        return DaskJobHook.for_task(self)

    def _namespace(self) -> str:
        return self.namespace or self.hook.get_namespace() or "default"

    def poke(self, context: Context) -> bool | PokeReturnValue:
        namespace = self._namespace()
        try:
            obj = self.hook.get_daskjob(self.name, namespace)
        except DaskJobApiError as e:
            if e.permanent:
                raise AirflowFailException(str(e)) from e
            self.log.warning("%s", e)
            return False
        status = job_status(obj)
        self.log.info("DaskJob %s/%s is %s", namespace, self.name, status or "not started yet")
        if status == SUCCESSFUL:
            event = make_event("success", obj, name=self.name, namespace=namespace)
            self._attach_log(event)
            return PokeReturnValue(is_done=True, xcom_value=parse_result(event["result"]))
        if status == FAILED:
            event = make_event("failed", obj, name=self.name, namespace=namespace)
            self._attach_log(event)
            raise AirflowException(failure_message(event))
        return False

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        namespace = self._namespace()
        # A job that already ended needs no deferral.
        done = self.poke(context)
        if done:
            return done.xcom_value if isinstance(done, PokeReturnValue) else None
        deadline = time.time() + float(self.timeout) if self.timeout else None
        if self.execution_timeout is not None:
            limit = time.time() + self.execution_timeout.total_seconds()
            deadline = min(deadline, limit) if deadline else limit
        config_dict, extras = self.hook.kubeconfig_for_trigger(self.config_file)
        self.defer(
            trigger=DaskJobTrigger(
                name=self.name,
                namespace=namespace,
                kubernetes_conn_id=self.kubernetes_conn_id,
                config_dict=config_dict,
                connection_extras=extras,
                cluster_context=self.cluster_context,
                in_cluster=self.in_cluster,
                api_group=self.api_group,
                api_version=self.api_version,
                deadline=deadline,
                poll_interval=float(self.poke_interval),
                on_kill_action="keep",
            ),
            method_name="execute_complete",
            timeout=(
                datetime.timedelta(seconds=max(deadline - time.time(), 0) + max(60, 2 * self.poke_interval))
                if deadline
                else None
            ),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        status = event.get("status")
        if status in ("success", "failed"):
            self._attach_log(event)
        if status == "success":
            return parse_result(event.get("result"))
        if status == "timeout":
            raise AirflowSensorTimeout(
                f"DaskJob {event.get('namespace')}/{event.get('name')} did not end within the sensor's "
                f"timeout (job status {event.get('job_status') or 'none yet'})"
            )
        raise AirflowException(failure_message(event))

    def _attach_log(self, event: dict[str, Any]) -> None:
        pod = event.get("runner_pod")
        if not self.attach_log or not pod:
            return
        try:
            text = self.hook.read_pod_log(pod, event["namespace"], tail_lines=self.log_tail_lines)
        except Exception as e:
            self.log.warning("Could not read the log of runner pod %s: %s", pod, e)
            return
        self.log.info("Log of runner pod %s/%s:", event["namespace"], pod)
        for line in text.splitlines():
            self.log.info("[%s] %s", pod, line)
