from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
import yaml
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowTaskTimeout,
    TaskDeferred,
)

from dask_operator_provider.operators.daskjob import XCOM_NAME, XCOM_NAMESPACE, DaskJobOperator
from dask_operator_provider.triggers.daskjob import DaskJobTrigger
from dask_operator_provider.utils.daskjob import (
    LABEL_FINISHED,
    LABEL_MANAGED_BY,
    LABEL_TRY_NUMBER,
    ti_identity,
    ti_labels,
)

from .conftest import FakeTI, api_error, run_trigger

SCRIPT = "print('hello')"


def op(**kw):
    defaults = dict(
        task_id="task", image="dask-kubernetes:dev", script=SCRIPT, namespace="ns", poll_interval=0.01
    )
    if "job" in kw:
        defaults.pop("image")
        defaults.pop("script")
    return DaskJobOperator(**{**defaults, **kw})


def logged(caplog, capsys) -> str:
    """The task log: Airflow 2 logs through logging (caplog), Airflow 3 through structlog (stdout)."""
    return caplog.text + capsys.readouterr().out


def only_job(cluster):
    assert len(cluster.jobs) == 1, cluster.jobs
    return next(iter(cluster.jobs.values()))


def deferred(operator, ti) -> DaskJobTrigger:
    with pytest.raises(TaskDeferred) as info:
        operator.execute({"ti": ti})
    assert info.value.method_name == "execute_complete"
    return info.value.trigger


class TestCreate:
    def test_creates_a_labelled_job_and_pushes_xcoms_before_deferring(self, cluster, ti):
        trigger = deferred(op(deferrable=True, labels={"team": "a"}), ti)
        job = only_job(cluster)
        meta = job["metadata"]
        assert meta["name"].startswith("dag-task-")
        assert len(meta["name"]) == len("dag-task-") + 6
        assert meta["namespace"] == "ns"
        identity = ti_identity("dag", "task", ti.run_id, -1)
        assert meta["labels"] == {"team": "a", **ti_labels(identity, 1)}
        assert meta["labels"][LABEL_MANAGED_BY] == "airflow-provider-dask-operator"
        assert {k: meta["annotations"][k] for k in identity} == identity
        assert ti.xcoms == {XCOM_NAME: meta["name"], XCOM_NAMESPACE: "ns"}
        assert (trigger.name, trigger.namespace, trigger.uid) == (meta["name"], "ns", meta["uid"])
        assert trigger.on_kill_action == "delete"

    def test_a_new_name_for_each_try(self, cluster):
        for try_number in (1, 2):
            ti = FakeTI(try_number=try_number)
            cluster.jobs.clear()
            deferred(op(deferrable=True, reattach_on_restart=False), ti)
            assert only_job(cluster)["metadata"]["labels"][LABEL_TRY_NUMBER] == str(try_number)
        assert len({c[2] for c in cluster.calls if c[0] == "create"}) == 2

    def test_manifest_name_namespace_and_service_selector(self, cluster, ti):
        manifest = {
            "apiVersion": "kubernetes.dask.org/v1",
            "kind": "DaskJob",
            "metadata": {"name": "example", "namespace": "default", "labels": {"x": "1"}},
            "spec": {
                "job": {"spec": {"containers": [{"name": "job", "image": "i"}]}},
                "cluster": {
                    "spec": {"scheduler": {"service": {"selector": {"dask.org/cluster-name": "example"}}}}
                },
            },
        }
        deferred(op(job=yaml.safe_dump(manifest), namespace=None, deferrable=True), ti)
        job = only_job(cluster)
        name = job["metadata"]["name"]
        assert name.startswith("example-")
        assert job["metadata"]["namespace"] == "default"
        assert job["metadata"]["labels"]["x"] == "1"
        assert (
            job["spec"]["cluster"]["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"]
            == name
        )

    def test_fixed_name(self, cluster, ti):
        deferred(op(name="fixed", random_name_suffix=False, deferrable=True), ti)
        assert only_job(cluster)["metadata"]["name"] == "fixed"

    def test_execution_timeout_becomes_an_absolute_deadline(self, cluster, ti):
        operator = op(deferrable=True, execution_timeout=timedelta(minutes=5), poll_interval=10)
        with pytest.raises(TaskDeferred) as info:
            operator.execute({"ti": ti})
        trigger = info.value.trigger
        assert trigger.deadline == pytest.approx(ti.start_date.timestamp() + 300, abs=1)
        assert info.value.timeout.total_seconds() == pytest.approx(300 + 60, abs=2)
        assert trigger.startup_deadline is not None

    def test_kubeconfig_is_shipped_as_content(self, cluster, ti, tmp_path, monkeypatch):
        from dask_operator_provider.hooks.daskjob import DaskJobHook

        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "clusters": [{"name": "c"}]}))
        monkeypatch.setattr(
            DaskJobHook,
            "conn_extras",
            property(lambda self: {"kube_config_path": str(path), "namespace": "ns"}),
        )
        trigger = deferred(op(deferrable=True), ti)
        assert trigger.config_dict == {"apiVersion": "v1", "clusters": [{"name": "c"}]}
        assert trigger.connection_extras == {"namespace": "ns"}

    def test_no_wait(self, cluster, ti):
        name = op(wait_for_completion=False).execute({"ti": ti})
        assert name == only_job(cluster)["metadata"]["name"]
        assert ti.xcoms[XCOM_NAME] == name


def finish(cluster, **status):
    job = only_job(cluster)
    cluster.set_status(job["metadata"]["name"], job["metadata"]["namespace"], **status)
    return job["metadata"]["name"]


class TestDeferredRun:
    def test_execute_trigger_resume(self, cluster, ti, caplog, capsys):
        operator = op(deferrable=True)
        trigger = deferred(operator, ti)
        name = finish(cluster, jobStatus="Successful", result='{"mean": 1.0002}', jobRunnerPodName="r-runner")
        cluster.logs[("ns", "r-runner")] = "starting\nmean of x + x.T: 1.0002\n"
        event = asyncio.run(run_trigger(trigger))
        resumed = op(deferrable=True)  # Airflow resumes on a fresh operator
        with caplog.at_level(logging.INFO):
            result = resumed.execute_complete({"ti": ti}, event)
        assert result == {"mean": 1.0002}
        assert "[r-runner] mean of x + x.T: 1.0002" in logged(caplog, capsys)
        assert ("ns", name) not in cluster.jobs  # cleanup="on_success"

    def test_text_result(self, cluster, ti):
        trigger = deferred(op(deferrable=True), ti)
        finish(cluster, jobStatus="Successful", result="42 rows written")
        assert op().execute_complete({"ti": ti}, asyncio.run(run_trigger(trigger))) == "42 rows written"

    def test_no_result(self, cluster, ti):
        trigger = deferred(op(deferrable=True), ti)
        finish(cluster, jobStatus="Successful")
        assert op().execute_complete({"ti": ti}, asyncio.run(run_trigger(trigger))) is None

    def test_failed_job_fails_with_reason_and_message_and_is_kept(self, cluster, ti, caplog, capsys):
        trigger = deferred(op(deferrable=True), ti)
        name = finish(
            cluster,
            jobStatus="Failed",
            reason="RunnerFailed",
            message="runner container exited with 1",
            jobRunnerPodName="r-runner",
        )
        cluster.logs[("ns", "r-runner")] = "Traceback\nValueError: failed on purpose"
        event = asyncio.run(run_trigger(trigger))
        with caplog.at_level(logging.INFO), pytest.raises(AirflowException) as info:
            op().execute_complete({"ti": ti}, event)
        assert str(info.value) == f"DaskJob ns/{name} failed: RunnerFailed: runner container exited with 1"
        assert "ValueError: failed on purpose" in logged(caplog, capsys)
        assert cluster.jobs[("ns", name)]["metadata"]["labels"][LABEL_FINISHED] == "true"

    @pytest.mark.parametrize(
        ("cleanup", "status", "kept"),
        [
            ("always", "Failed", False),
            ("always", "Successful", False),
            ("never", "Successful", True),
            ("never", "Failed", True),
            ("on_success", "Failed", True),
        ],
    )
    def test_cleanup_choice(self, cluster, ti, cleanup, status, kept):
        trigger = deferred(op(deferrable=True, cleanup=cleanup), ti)
        name = finish(cluster, jobStatus=status)
        event = asyncio.run(run_trigger(trigger))
        with pytest.raises(AirflowException) if status == "Failed" else _nothing():
            op(cleanup=cleanup).execute_complete({"ti": ti}, event)
        assert (("ns", name) in cluster.jobs) == kept

    def test_timeout_deletes_and_raises_task_timeout(self, cluster, ti):
        operator = op(deferrable=True, execution_timeout=timedelta(seconds=1))
        ti.start_date = ti.start_date - timedelta(seconds=5)
        trigger = deferred(operator, ti)
        finish(cluster, jobStatus="Running")
        event = asyncio.run(run_trigger(trigger))
        assert event["status"] == "timeout"
        with pytest.raises(AirflowTaskTimeout, match="execution_timeout"):
            op(execution_timeout=timedelta(seconds=1)).execute_complete({"ti": ti}, event)
        assert not cluster.jobs

    def test_job_gone_before_resume_still_uses_the_event(self, cluster, ti):
        trigger = deferred(op(deferrable=True), ti)
        finish(cluster, jobStatus="Successful", result="[1]", jobRunnerPodName="gone-runner")
        event = asyncio.run(run_trigger(trigger))
        cluster.jobs.clear()  # a TTL deleted it, with its runner pod
        assert op().execute_complete({"ti": ti}, event) == [1]

    def test_error_event(self, cluster, ti):
        with pytest.raises(AirflowException, match="was deleted before it finished"):
            op().execute_complete(
                {"ti": ti},
                {
                    "status": "error",
                    "name": "j",
                    "namespace": "ns",
                    "message": "DaskJob ns/j was deleted before it finished",
                },
            )


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


class TestSyncRun:
    def test_polls_in_the_worker(self, cluster, ti, monkeypatch):
        import dask_operator_provider.operators.daskjob as mod

        sleeps = []

        def sleep(seconds):
            sleeps.append(seconds)
            if len(sleeps) == 2:
                finish(cluster, jobStatus="Successful", result='{"ok": true}')

        monkeypatch.setattr(mod.time, "sleep", sleep)
        assert op(deferrable=False).execute({"ti": ti}) == {"ok": True}
        assert len(sleeps) == 2
        assert not cluster.jobs

    def test_api_server_restart_while_polling(self, cluster, ti, monkeypatch):
        import dask_operator_provider.operators.daskjob as mod

        monkeypatch.setattr(mod.time, "sleep", lambda s: None)
        operator = op(deferrable=False, reattach_on_restart=False)
        cluster.get_errors = [ConnectionRefusedError("refused")] * 5
        cluster.create_error = None
        original = cluster.create_namespaced_custom_object

        def create_then_succeed(*a, **kw):
            obj = original(*a, **kw)
            cluster.set_status(obj["metadata"]["name"], "ns", jobStatus="Successful", result="1")
            return obj

        cluster.create_namespaced_custom_object = create_then_succeed
        assert operator.execute({"ti": ti}) == 1
        assert not cluster.get_errors

    def test_failure_in_the_worker(self, cluster, ti, monkeypatch):
        import dask_operator_provider.operators.daskjob as mod

        monkeypatch.setattr(
            mod.time,
            "sleep",
            lambda s: finish(
                cluster,
                jobStatus="Failed",
                reason="DeadlineExceeded",
                message="activeDeadlineSeconds 60 passed",
            ),
        )
        with pytest.raises(
            AirflowException, match="failed: DeadlineExceeded: activeDeadlineSeconds 60 passed"
        ):
            op(deferrable=False).execute({"ti": ti})

    def test_airflow_timeout_in_the_worker_deletes(self, cluster, ti, monkeypatch):
        import dask_operator_provider.operators.daskjob as mod

        def sleep(seconds):
            raise AirflowTaskTimeout("Timeout, PID: 1")

        monkeypatch.setattr(mod.time, "sleep", sleep)
        with pytest.raises(AirflowTaskTimeout):
            op(deferrable=False).execute({"ti": ti})
        assert not cluster.jobs


class TestReattach:
    def existing(self, cluster, ti, try_number=1, **status):
        identity = ti_identity(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        o = cluster.add("dag-task-old123", **status)
        o["metadata"]["labels"] = ti_labels(identity, try_number)
        o["metadata"]["annotations"] = dict(identity)
        return o

    def test_running_job_of_an_earlier_try(self, cluster):
        ti = FakeTI(try_number=2)
        old = self.existing(cluster, ti, jobStatus="Running")
        trigger = deferred(op(deferrable=True), ti)
        assert (trigger.name, trigger.uid) == ("dag-task-old123", old["metadata"]["uid"])
        assert not [c for c in cluster.calls if c[0] == "create"]
        assert ti.xcoms[XCOM_NAME] == "dag-task-old123"

    def test_succeeded_unreported_job_completes_without_deferral(self, cluster):
        ti = FakeTI(try_number=2)
        self.existing(cluster, ti, jobStatus="Successful", result='{"mean": 1.0}')
        assert op(deferrable=True).execute({"ti": ti}) == {"mean": 1.0}
        assert not cluster.jobs

    def test_failed_job_is_replaced(self, cluster):
        ti = FakeTI(try_number=2)
        self.existing(cluster, ti, jobStatus="Failed")
        trigger = deferred(op(deferrable=True), ti)
        assert trigger.name != "dag-task-old123"
        assert len(cluster.jobs) == 2

    def test_reported_job_is_not_reattached(self, cluster):
        ti = FakeTI(try_number=2)
        old = self.existing(cluster, ti, jobStatus="Successful")
        old["metadata"]["labels"][LABEL_FINISHED] = "true"
        trigger = deferred(op(deferrable=True), ti)
        assert trigger.name != "dag-task-old123"

    def test_other_task_instances_are_not_reattached(self, cluster):
        self.existing(cluster, FakeTI(run_id="another-run"), jobStatus="Running")
        trigger = deferred(op(deferrable=True), FakeTI())
        assert trigger.name != "dag-task-old123"

    def test_conflict_adopts_only_its_own_job(self, cluster):
        ti = FakeTI()
        self.existing(cluster, ti, jobStatus="Running")
        operator = op(
            name="dag-task-old123", random_name_suffix=False, reattach_on_restart=False, deferrable=True
        )
        assert deferred(operator, ti).name == "dag-task-old123"
        with pytest.raises(
            AirflowFailException, match="already exists and was not made by this task instance"
        ):
            op(name="dag-task-old123", random_name_suffix=False, deferrable=True).execute(
                {"ti": FakeTI(run_id="other")}
            )


class TestKill:
    def test_on_kill_deletes(self, cluster, ti):
        operator = op(deferrable=True)
        deferred(operator, ti)
        operator.on_kill()
        assert not cluster.jobs

    def test_on_kill_keep(self, cluster, ti):
        operator = op(deferrable=True, on_kill_action="keep")
        deferred(operator, ti)
        operator.on_kill()
        assert len(cluster.jobs) == 1

    def test_on_kill_before_create_does_nothing(self, cluster):
        op().on_kill()
        assert not cluster.calls


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"image": None, "script": None}, "give either job"),
            ({"job": {"kind": "DaskJob"}, "image": "x"}, "not both"),
            ({"script": None}, "exactly one of script"),
            ({"cleanup": "sometimes"}, "cleanup must be one of"),
            ({"on_kill_action": "explode"}, "on_kill_action must be one of"),
        ],
    )
    def test_at_construction(self, kwargs, message):
        defaults = dict(task_id="t", image="img", script="x")
        with pytest.raises(AirflowFailException, match=message):
            DaskJobOperator(**{**defaults, **kwargs})

    @pytest.mark.parametrize(
        ("job", "message"),
        [
            ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "not a DaskJob: it is a Pod"),
            ("{not yaml", "not valid YAML"),
            ("/nowhere/job.yaml", "does not exist"),
        ],
    )
    def test_not_a_daskjob_fails_before_any_call(self, cluster, ti, job, message):
        with pytest.raises(AirflowFailException, match=message):
            op(job=job).execute({"ti": ti})
        assert not cluster.calls

    def test_invalid_name(self, cluster, ti):
        with pytest.raises(AirflowFailException, match="name 'Bad_Name' is not valid"):
            op(name="Bad_Name", random_name_suffix=False).execute({"ti": ti})
        assert not cluster.calls

    def test_missing_namespace(self, cluster, ti):
        with pytest.raises(AirflowFailException, match="namespace 'nowhere' does not exist"):
            op(namespace="nowhere").execute({"ti": ti})
        assert not cluster.jobs

    def test_rejected_by_the_schema(self, cluster, ti):
        cluster.reject = 'spec.cluster.spec.worker.replicas: Invalid value: "string": must be of type integer'
        with pytest.raises(AirflowFailException, match=r"rejected by the API server: .*replicas.*integer"):
            op(reattach_on_restart=False).execute({"ti": ti})
        assert not cluster.jobs

    def test_crd_not_installed(self, cluster, ti):
        cluster.create_error = api_error(404, "the server could not find the requested resource")
        with pytest.raises(AirflowFailException, match="is the DaskJob CRD installed"):
            op(reattach_on_restart=False).execute({"ti": ti})

    def test_forbidden(self, cluster, ti):
        cluster.create_error = api_error(
            403, 'daskjobs.kubernetes.dask.org is forbidden: User "u" cannot create'
        )
        with pytest.raises(AirflowFailException, match=r"not allowed: .*forbidden"):
            op(reattach_on_restart=False).execute({"ti": ti})

    def test_unreachable_api_server(self, ti, tmp_path):
        """The real hook and kubernetes client against a port where nothing listens."""
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        operator = op(kubernetes_conn_id=None, config_file=str(path))
        with pytest.raises(
            AirflowException, match=r"cannot reach the Kubernetes API server at https://127\.0\.0\.1:1"
        ):
            operator.execute({"ti": ti})


class TestTemplating:
    def test_absolute_job_file_is_read_then_rendered(self, tmp_path, ti):
        import jinja2

        path = tmp_path / "job.yaml"
        path.write_text("kind: DaskJob\nmetadata:\n  name: j-{{ params.n }}\n")
        operator = op(job=str(path))
        operator.render_template_fields({"params": {"n": 7}, "ti": ti}, jinja_env=jinja2.Environment())
        assert operator.job == "kind: DaskJob\nmetadata:\n  name: j-7"
