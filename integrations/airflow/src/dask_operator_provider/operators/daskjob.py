"""DaskJobOperator: hands a computation to Dask as a DaskJob and gives back its outcome and result."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowTaskTimeout,
    BaseOperator,
    conf,
)

from dask_operator_provider.hooks.daskjob import DaskJobApiError, DaskJobHook
from dask_operator_provider.triggers.daskjob import DaskJobTrigger
from dask_operator_provider.utils.daskjob import (
    CLEANUP_CHOICES,
    GROUP,
    ON_KILL_CHOICES,
    TEMPLATE_EXTENSIONS,
    VERSION,
    DaskJobInputError,
    belongs_to,
    build_job,
    check_name,
    failure_message,
    identity_selector,
    job_status,
    load_job,
    make_event,
    parse_result,
    set_name,
    ti_identity,
    ti_labels,
    unique_name,
    verdict,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

XCOM_NAME = "daskjob_name"
XCOM_NAMESPACE = "daskjob_namespace"


class DaskJobOperator(BaseOperator):
    """Creates a DaskJob, waits for it (deferred or in the worker) and returns its result.

    The job is ``job`` (a manifest as a dict, YAML/JSON text or the path of a ``.yaml``/``.yml``/``.json``
    file, templated; or a bare ``spec``), or is built from ``image`` and ``script`` or ``command`` (with
    ``workers``, ``resources``, ``env``, or ``cluster_ref`` to run on an existing DaskCluster).

    The DaskJob gets a new name for each try (``name``, else the manifest's name, else ``<dag>-<task>``,
    plus 6 random characters), the task instance's labels, and is found again after a worker restart
    instead of being created twice. XComs ``daskjob_name`` and ``daskjob_namespace`` are pushed as soon as
    it exists; the return value is ``status.result`` (the runner's termination message) parsed as JSON, or
    its text when it is not JSON. The runner's log is copied into the task log. A ``Failed`` DaskJob fails
    the task with its reason and message.

    :param job: the DaskJob (see above); exclusive with ``image``.
    :param namespace: its namespace; default the manifest's, then the connection's, then ``default``.
    :param name: the name's base (``random_name_suffix=False``: the name itself).
    :param kubernetes_conn_id: the ``kubernetes`` connection of the cncf-kubernetes provider.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param cleanup: ``on_success`` (default) deletes the DaskJob when it succeeded and keeps a failed one
        for inspection; ``always`` deletes it whatever happened; ``never`` keeps it.
    :param on_kill_action: ``delete`` (default) deletes the DaskJob when the task is killed or times out;
        ``keep`` leaves it running.
    :param reattach_on_restart: find the DaskJob of an earlier try of this task instance that is still
        running (or succeeded unreported) and wait for it instead of creating another.
    :param startup_timeout_seconds: how long the DaskJob may take to be ``Running``.
    :param poll_interval: seconds between two reads of the DaskJob.
    :param transient_error_seconds: how long API errors that may pass (an API server restarting, HTTP 5xx)
        are retried while waiting before the task fails.
    :param get_logs: copy the runner pod's log (its last ``log_tail_lines`` lines) into the task log.
    :param wait_for_completion: False: create the DaskJob, push the XComs and return its name.
    """

    template_fields: Sequence[str] = (
        "job",
        "name",
        "namespace",
        "labels",
        "annotations",
        "image",
        "script",
        "cluster_ref",
        "env",
        "kubernetes_conn_id",
        "config_file",
        "cluster_context",
    )
    template_ext: Sequence[str] = TEMPLATE_EXTENSIONS
    template_fields_renderers = {"job": "yaml", "script": "py", "labels": "json", "env": "json"}
    ui_color = "#fde9c6"

    def __init__(
        self,
        *,
        job: dict[str, Any] | str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        image: str | None = None,
        script: str | None = None,
        command: list[str] | None = None,
        workers: int = 2,
        resources: dict[str, Any] | None = None,
        cluster_ref: str | None = None,
        env: dict[str, str] | None = None,
        image_pull_policy: str = "IfNotPresent",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        random_name_suffix: bool = True,
        kubernetes_conn_id: str | None = "kubernetes_default",
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        api_group: str = GROUP,
        api_version: str = VERSION,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        startup_timeout_seconds: float | None = 600,
        transient_error_seconds: float = 120.0,
        cleanup: str = "on_success",
        on_kill_action: str = "delete",
        reattach_on_restart: bool = True,
        get_logs: bool = True,
        log_tail_lines: int | None = 1000,
        wait_for_completion: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (job is None) == (image is None):
            raise AirflowFailException(
                f"{type(self).__name__} {kwargs.get('task_id')!r}: give either job (a DaskJob manifest, "
                "YAML text or file) or image with script or command, "
                + ("not both" if job is not None else "neither was given")
            )
        if image is not None and (script is None) == (command is None):
            raise AirflowFailException(
                f"{type(self).__name__} {kwargs.get('task_id')!r}: with image, give exactly one of script "
                "(Python source) and command (a list of strings)"
            )
        if cleanup not in CLEANUP_CHOICES:
            raise AirflowFailException(f"cleanup must be one of {CLEANUP_CHOICES}, not {cleanup!r}")
        if on_kill_action not in ON_KILL_CHOICES:
            raise AirflowFailException(
                f"on_kill_action must be one of {ON_KILL_CHOICES}, not {on_kill_action!r}"
            )
        if poll_interval <= 0:
            raise AirflowFailException(f"poll_interval must be positive, not {poll_interval!r}")
        self.job = job
        self.namespace = namespace
        self.name = name
        self.image = image
        self.script = script
        self.command = command
        self.workers = workers
        self.resources = resources
        self.cluster_ref = cluster_ref
        self.env = env
        self.image_pull_policy = image_pull_policy
        self.labels = labels
        self.annotations = annotations
        self.random_name_suffix = random_name_suffix
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.api_group = api_group
        self.api_version = api_version
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.startup_timeout_seconds = startup_timeout_seconds
        self.transient_error_seconds = transient_error_seconds
        self.cleanup = cleanup
        self.on_kill_action = on_kill_action
        self.reattach_on_restart = reattach_on_restart
        self.get_logs = get_logs
        self.log_tail_lines = log_tail_lines
        self.wait_for_completion = wait_for_completion
        # The DaskJob this task instance works on, once it exists.
        self.job_name: str | None = None
        self.job_namespace: str | None = None
        self.job_uid: str | None = None

    # ------------------------------------------------------------------------------------------------
    # Templating: a job file given by an absolute path is read here (Jinja only finds paths relative to
    # the DAG folder and template_searchpath), then rendered like any template.

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        job = self.job
        if isinstance(job, str) and "\n" not in job and job.strip().endswith(TEMPLATE_EXTENSIONS):
            path = job.strip()
            if os.path.isabs(path) and os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    self.job = f.read()
        super().render_template_fields(context, jinja_env)

    # ------------------------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> DaskJobHook:
        return DaskJobHook.for_task(self)

    def build_manifest(self) -> dict[str, Any]:
        """The DaskJob manifest before naming and labelling; bad input raises DaskJobInputError."""
        if self.job is not None:
            return load_job(self.job, group=self.api_group, version=self.api_version)
        return build_job(
            image=self.image or "",
            script=self.script,
            command=self.command,
            workers=self.workers,
            resources=self.resources,
            cluster_ref=self.cluster_ref,
            env=self.env,
            image_pull_policy=self.image_pull_policy,
        )

    def _namespace(self, manifest: Mapping[str, Any]) -> str:
        namespace = self.namespace or (manifest.get("metadata") or {}).get("namespace")
        if not namespace:
            try:
                namespace = self.hook.get_namespace()
            except Exception as e:  # a connection that does not exist
                raise AirflowFailException(f"cannot read connection {self.kubernetes_conn_id!r}: {e}") from e
        return namespace or "default"

    def prepare(self, context: Context) -> tuple[dict[str, Any], dict[str, str]]:
        """The DaskJob to create for this try, and the task instance's identity."""
        try:
            manifest = self.build_manifest()
        except DaskJobInputError as e:
            raise AirflowFailException(f"{self.task_id}: {e}") from e
        ti = context["ti"]
        identity = ti_identity(ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))
        metadata = manifest.setdefault("metadata", {})
        namespace = self._namespace(manifest)
        metadata["namespace"] = namespace
        base = self.name or metadata.get("name") or f"{ti.dag_id}-{ti.task_id}"
        name = unique_name(base) if self.random_name_suffix else base
        try:
            check_name(name)
        except DaskJobInputError as e:
            raise AirflowFailException(f"{self.task_id}: {e}") from e
        set_name(manifest, name)
        metadata["labels"] = {
            **(metadata.get("labels") or {}),
            **(self.labels or {}),
            **ti_labels(identity, getattr(ti, "try_number", None)),
        }
        metadata["annotations"] = {
            **(metadata.get("annotations") or {}),
            **(self.annotations or {}),
            **identity,
        }
        return manifest, identity

    def execute(self, context: Context) -> Any:
        manifest, identity = self.prepare(context)
        namespace = manifest["metadata"]["namespace"]
        obj = self.find_existing(namespace, identity) if self.reattach_on_restart else None
        if obj is None:
            obj = self.create(manifest, identity)
        self.job_name = obj["metadata"]["name"]
        self.job_namespace = obj["metadata"].get("namespace") or namespace
        self.job_uid = obj["metadata"].get("uid")
        ti = context["ti"]
        ti.xcom_push(key=XCOM_NAME, value=self.job_name)
        ti.xcom_push(key=XCOM_NAMESPACE, value=self.job_namespace)
        if not self.wait_for_completion:
            return self.job_name

        deadline = self._execution_deadline(context)
        startup_deadline = (
            time.time() + self.startup_timeout_seconds if self.startup_timeout_seconds else None
        )
        # Already over (a reattached job that ended while no worker watched): no deferral needed.
        event = verdict(
            obj,
            name=self.job_name,
            namespace=self.job_namespace,
            uid=self.job_uid,
            now=time.time(),
        )
        if event is not None:
            return self.execute_complete(context, event)
        if self.deferrable:
            self.defer_until_done(deadline, startup_deadline)
        try:
            event = self.wait(deadline, startup_deadline)
        except AirflowTaskTimeout:
            self._kill("the task's execution_timeout passed")
            raise
        return self.execute_complete(context, event)

    def _execution_deadline(self, context: Context) -> float | None:
        if self.execution_timeout is None:
            return None
        start = getattr(context["ti"], "start_date", None)
        started = start.timestamp() if start is not None else time.time()
        return started + self.execution_timeout.total_seconds()

    def find_existing(self, namespace: str, identity: Mapping[str, str]) -> dict[str, Any] | None:
        """The newest DaskJob of an earlier try of this task instance that is running or succeeded (and
        was not reported yet); a failed one is left for the new try to replace."""
        try:
            items = self.hook.list_daskjobs(namespace, identity_selector(identity))
        except DaskJobApiError as e:
            raise self._api_failure(e) from e
        candidates = [
            o
            for o in items
            if belongs_to(o, identity)
            and job_status(o) != "Failed"
            and not (o.get("metadata") or {}).get("deletionTimestamp")
        ]
        if not candidates:
            return None
        candidates.sort(key=lambda o: (o.get("metadata") or {}).get("creationTimestamp") or "")
        obj = candidates[-1]
        self.log.info(
            "Reattaching to DaskJob %s/%s of an earlier try (status %s) instead of creating another",
            namespace,
            obj["metadata"]["name"],
            job_status(obj) or "none yet",
        )
        return obj

    def create(self, manifest: dict[str, Any], identity: Mapping[str, str]) -> dict[str, Any]:
        namespace = manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        try:
            obj = self.hook.create_daskjob(manifest, namespace)
        except DaskJobApiError as e:
            if e.status != 409:
                raise self._api_failure(e) from e
            # The name is taken: adopt it only if it was made for this very task instance.
            try:
                existing = self.hook.get_daskjob(name, namespace)
            except DaskJobApiError as e2:
                raise self._api_failure(e2) from e2
            if not belongs_to(existing, identity) or job_status(existing) == "Failed":
                raise AirflowFailException(
                    f"a DaskJob named {namespace}/{name} already exists and was not made by this task "
                    "instance (or failed): leave random_name_suffix=True or template the name"
                ) from e
            self.log.info("DaskJob %s/%s exists already for this task instance: adopting it", namespace, name)
            return existing
        self.log.info("Created DaskJob %s/%s", namespace, name)
        return obj

    def _api_failure(self, e: DaskJobApiError) -> AirflowException:
        """Bad input (missing namespace, schema, RBAC, no CRD) fails without retries; the rest may retry."""
        if e.permanent:
            return AirflowFailException(str(e))
        return AirflowException(str(e))

    # ------------------------------------------------------------------------------------------------
    # Waiting

    def trigger(self, deadline: float | None, startup_deadline: float | None) -> DaskJobTrigger:
        try:
            config_dict, extras = self.hook.kubeconfig_for_trigger(self.config_file)
        except OSError as e:
            raise AirflowFailException(f"cannot read the kubeconfig for the trigger: {e}") from e
        return DaskJobTrigger(
            name=self.job_name or "",
            namespace=self.job_namespace or "",
            uid=self.job_uid,
            kubernetes_conn_id=self.kubernetes_conn_id,
            config_dict=config_dict,
            connection_extras=extras,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
            api_group=self.api_group,
            api_version=self.api_version,
            deadline=deadline,
            startup_deadline=startup_deadline,
            poll_interval=self.poll_interval,
            transient_error_seconds=self.transient_error_seconds,
            on_kill_action=self.on_kill_action,
        )

    def defer_until_done(self, deadline: float | None, startup_deadline: float | None) -> None:
        # Airflow's own timeout only backs the trigger up: the trigger's "timeout" event comes first,
        # so that the DaskJob is deleted (a framework timeout would not call on_kill).
        timeout = None
        if deadline is not None:
            remaining = max(deadline - time.time(), 0.0)
            timeout = datetime.timedelta(seconds=remaining + max(60.0, 2 * self.poll_interval))
        self.defer(
            trigger=self.trigger(deadline, startup_deadline), method_name="execute_complete", timeout=timeout
        )

    def wait(self, deadline: float | None, startup_deadline: float | None) -> dict[str, Any]:
        """Polls the DaskJob in the worker until the same event the trigger would fire."""
        name, namespace = self.job_name or "", self.job_namespace or ""
        failing_since: float | None = None  # the first of the transient errors in a row
        last: dict[str, Any] | None = None
        while True:
            try:
                obj = self.hook.get_daskjob(name, namespace)
            except DaskJobApiError as e:
                if e.status == 404:
                    return make_event(
                        "error",
                        last,
                        name=name,
                        namespace=namespace,
                        message=f"DaskJob {namespace}/{name} was deleted before it finished",
                    )
                now = time.time()
                failing_since = failing_since or now
                if e.permanent or now - failing_since >= self.transient_error_seconds:
                    return make_event("error", last, name=name, namespace=namespace, message=str(e))
                self.log.warning(
                    "%s (retrying for %.0fs more)", e, self.transient_error_seconds - (now - failing_since)
                )
            else:
                failing_since = None
                last = obj
                event = verdict(
                    obj,
                    name=name,
                    namespace=namespace,
                    uid=self.job_uid,
                    now=time.time(),
                    deadline=deadline,
                    startup_deadline=startup_deadline,
                )
                if event is not None:
                    return event
            time.sleep(self.poll_interval)

    # ------------------------------------------------------------------------------------------------
    # The outcome

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resumes from the trigger's event (or the worker's own wait): logs, cleanup, result or failure."""
        self.job_name = event.get("name") or self.job_name
        self.job_namespace = event.get("namespace") or self.job_namespace
        self.job_uid = event.get("uid") or self.job_uid
        status = event.get("status")
        where = f"DaskJob {self.job_namespace}/{self.job_name}"
        self.log.info(
            "%s ended: %s (job status %s%s)",
            where,
            status,
            event.get("job_status"),
            f", {event['reason']}" if event.get("reason") else "",
        )
        try:
            if self.get_logs and status in ("success", "failed", "timeout"):
                self.copy_runner_log(event)
            if status == "success":
                result = parse_result(event.get("result"))
                self.log.info("%s result: %r", where, result)
                return result
            if status == "timeout":
                self._kill("it timed out")
                raise AirflowTaskTimeout(failure_message(event))
            raise AirflowException(failure_message(event))
        finally:
            self._clean_up(status)

    def copy_runner_log(self, event: Mapping[str, Any]) -> None:
        pod = event.get("runner_pod")
        if not pod:
            self.log.info(
                "DaskJob %s/%s has no runner pod: no log to copy", self.job_namespace, self.job_name
            )
            return
        try:
            text = self.hook.read_pod_log(pod, self.job_namespace or "", tail_lines=self.log_tail_lines)
        except Exception as e:
            self.log.warning("Could not read the log of runner pod %s: %s", pod, e)
            return
        tail = f" (last {self.log_tail_lines} lines)" if self.log_tail_lines else ""
        self.log.info("Log of runner pod %s/%s%s:", self.job_namespace, pod, tail)
        for line in text.splitlines():
            self.log.info("[%s] %s", pod, line)

    def _clean_up(self, status: str | None) -> None:
        if not self.job_name or not self.job_namespace:
            return
        delete = self.cleanup == "always" or (self.cleanup == "on_success" and status == "success")
        try:
            if delete:
                gone = not self.hook.delete_daskjob(self.job_name, self.job_namespace)
                self.log.info(
                    "DaskJob %s/%s %s",
                    self.job_namespace,
                    self.job_name,
                    "was already gone" if gone else "deleted",
                )
            elif status in ("success", "failed"):
                self.hook.mark_finished(self.job_name, self.job_namespace)
                self.log.info(
                    "DaskJob %s/%s kept (cleanup=%r)", self.job_namespace, self.job_name, self.cleanup
                )
        except DaskJobApiError as e:
            if e.status != 404:
                self.log.warning("Could not clean up DaskJob %s/%s: %s", self.job_namespace, self.job_name, e)

    def _kill(self, why: str) -> None:
        if not self.job_name or not self.job_namespace or self.on_kill_action != "delete":
            return
        self.log.info("Deleting DaskJob %s/%s: %s", self.job_namespace, self.job_name, why)
        try:
            self.hook.delete_daskjob(self.job_name, self.job_namespace)
        except DaskJobApiError as e:
            self.log.warning("Could not delete DaskJob %s/%s: %s", self.job_namespace, self.job_name, e)

    def on_kill(self) -> None:
        self._kill("the task was killed")
