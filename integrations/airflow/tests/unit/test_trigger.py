from __future__ import annotations

import asyncio
import time

import pytest

from dask_operator_provider.triggers.daskjob import DaskJobTrigger

from .conftest import api_error, run_trigger


def make(**kw):
    defaults = dict(
        name="job", namespace="ns", uid=None, kubernetes_conn_id="kubernetes_default", poll_interval=0.01
    )
    return DaskJobTrigger(**{**defaults, **kw})


class TestSerialization:
    def test_round_trip(self):
        trigger = make(
            uid="u",
            config_dict={"clusters": []},
            connection_extras={"namespace": "ns"},
            deadline=123.5,
            startup_deadline=100.0,
            on_kill_action="keep",
        )
        classpath, kwargs = trigger.serialize()
        assert classpath == "dask_operator_provider.triggers.daskjob.DaskJobTrigger"
        rebuilt = DaskJobTrigger(**kwargs)
        assert rebuilt.serialize() == (classpath, kwargs)

    def test_kwargs_survive_airflow_serialization(self):
        from airflow.serialization.serialized_objects import BaseSerialization

        _, kwargs = make(uid="u", config_dict={"a": [1, {"b": None}]}, deadline=time.time()).serialize()
        assert BaseSerialization.deserialize(BaseSerialization.serialize(kwargs)) == kwargs


class TestEvents:
    @pytest.mark.asyncio
    async def test_success_carries_the_result(self, cluster):
        o = cluster.add("job", jobStatus="Successful", result='{"mean": 1.0}', jobRunnerPodName="job-runner")
        event = await run_trigger(make(uid=o["metadata"]["uid"]))
        assert event["status"] == "success"
        assert event["result"] == '{"mean": 1.0}'
        assert event["runner_pod"] == "job-runner"
        assert event["uid"] == o["metadata"]["uid"]

    @pytest.mark.asyncio
    async def test_waits_until_terminal(self, cluster, monkeypatch):
        cluster.add("job", jobStatus="JobCreated")
        sleeps = []
        real_sleep = asyncio.sleep

        async def fake_sleep(seconds):
            sleeps.append(seconds)
            if len(sleeps) == 3:
                cluster.set_status("job", jobStatus="Failed", reason="RunnerFailed", message="exit code 1")
            await real_sleep(0)

        monkeypatch.setattr(asyncio, "sleep", fake_sleep)
        event = await run_trigger(make())
        assert event["status"] == "failed"
        assert (event["reason"], event["message"]) == ("RunnerFailed", "exit code 1")
        assert len(sleeps) == 3
        assert [c[0] for c in cluster.calls] == ["get"] * 4

    @pytest.mark.asyncio
    async def test_execution_deadline(self, cluster):
        cluster.add("job", jobStatus="Running")
        event = await run_trigger(make(deadline=time.time() - 1))
        assert event["status"] == "timeout"
        assert "execution_timeout" in event["message"]

    @pytest.mark.asyncio
    async def test_deadline_cuts_the_poll_short(self, cluster):
        cluster.add("job", jobStatus="Running")
        started = time.monotonic()
        event = await run_trigger(make(poll_interval=60, deadline=time.time() + 0.3))
        assert event["status"] == "timeout"
        assert time.monotonic() - started < 5

    @pytest.mark.asyncio
    async def test_startup_deadline(self, cluster):
        cluster.add("job", jobStatus="ClusterCreated", reason="Unschedulable", message="0/1 nodes")
        event = await run_trigger(make(startup_deadline=time.time() - 1))
        assert event["status"] == "timeout"
        assert "0/1 nodes" in event["message"]

    @pytest.mark.asyncio
    async def test_deleted_job_is_an_error(self, cluster):
        event = await run_trigger(make())
        assert event["status"] == "error"
        assert "was deleted before it finished" in event["message"]

    @pytest.mark.asyncio
    async def test_other_uid_is_an_error(self, cluster):
        cluster.add("job", jobStatus="Successful")
        event = await run_trigger(make(uid="another"))
        assert event["status"] == "error"

    @pytest.mark.asyncio
    async def test_transient_errors_are_retried(self, cluster):
        """An API server restart (as the first e2e run met): refused connections, then answers again."""
        cluster.add("job", jobStatus="Successful")
        cluster.get_errors = [api_error(500, "etcd timeout")] + [ConnectionRefusedError("refused")] * 20
        event = await run_trigger(make())
        assert event["status"] == "success"

    @pytest.mark.asyncio
    async def test_persistent_errors_end_in_an_error_event(self, cluster):
        cluster.add("job", jobStatus="Running")
        cluster.get_errors = [api_error(503, "unavailable")] * 10
        event = await run_trigger(make(transient_error_seconds=0.03, poll_interval=0.01))
        assert event["status"] == "error"
        assert "HTTP 503: unavailable" in event["message"]
        assert 0 < len(cluster.get_errors) < 10

    @pytest.mark.asyncio
    async def test_forbidden_is_an_error_at_once(self, cluster):
        cluster.add("job", jobStatus="Running")
        cluster.get_errors = [api_error(403, 'daskjobs is forbidden: User "x"')]
        event = await run_trigger(make())
        assert event["status"] == "error"
        assert "not allowed" in event["message"]

    @pytest.mark.asyncio
    async def test_unloadable_config_is_an_error_event(self):
        # No fake: the real async hook with a kubeconfig that is no kubeconfig.
        event = await run_trigger(make(kubernetes_conn_id=None, config_dict={"not": "a kubeconfig"}))
        assert event["status"] == "error"
        assert "DaskJob ns/job" in event["message"]


class TestKill:
    @pytest.mark.asyncio
    async def test_on_kill_deletes(self, cluster):
        cluster.add("job", jobStatus="Running")
        await make().on_kill()
        assert ("ns", "job") not in cluster.jobs

    @pytest.mark.asyncio
    async def test_on_kill_keeps(self, cluster):
        cluster.add("job", jobStatus="Running")
        await make(on_kill_action="keep").on_kill()
        assert ("ns", "job") in cluster.jobs

    @pytest.mark.asyncio
    async def test_no_kill_after_the_event(self, cluster):
        cluster.add("job", jobStatus="Successful")
        trigger = make()
        gen = trigger.run()
        await gen.__anext__()
        await trigger.on_kill()
        await trigger.cleanup()
        assert ("ns", "job") in cluster.jobs

    @pytest.mark.asyncio
    @pytest.mark.parametrize(("state", "deleted"), [("failed", True), ("deferred", False), (None, False)])
    async def test_cleanup_before_3_3(self, cluster, monkeypatch, state, deleted):
        import dask_operator_provider.triggers.daskjob as mod

        monkeypatch.setattr(mod, "AIRFLOW_V_3_3_PLUS", False)
        cluster.add("job", jobStatus="Running")
        trigger = make()

        async def task_state():
            return state

        monkeypatch.setattr(trigger, "_task_state", task_state)
        await trigger.cleanup()
        assert (("ns", "job") not in cluster.jobs) == deleted

    @pytest.mark.asyncio
    async def test_cleanup_on_3_3_never_deletes(self, cluster, monkeypatch):
        import dask_operator_provider.triggers.daskjob as mod

        monkeypatch.setattr(mod, "AIRFLOW_V_3_3_PLUS", True)
        cluster.add("job", jobStatus="Running")
        await make().cleanup()  # a triggerer restart: on_kill is Airflow 3.3's way for user kills
        assert ("ns", "job") in cluster.jobs
