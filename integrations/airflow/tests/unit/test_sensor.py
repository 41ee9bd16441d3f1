from __future__ import annotations

import asyncio

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    PokeReturnValue,
    TaskDeferred,
)

from dask_operator_provider.sensors.daskjob import DaskJobSensor

from .conftest import run_trigger


def sensor(**kw):
    return DaskJobSensor(**{"task_id": "wait", "name": "job", "namespace": "ns", **kw})


class TestPoke:
    def test_running(self, cluster, ti):
        cluster.add("job", jobStatus="Running")
        assert sensor().poke({"ti": ti}) is False

    def test_successful_returns_the_result(self, cluster, ti):
        cluster.add("job", jobStatus="Successful", result='{"mean": 1.0}')
        done = sensor().poke({"ti": ti})
        assert isinstance(done, PokeReturnValue)
        assert done.is_done
        assert done.xcom_value == {"mean": 1.0}
        assert ("ns", "job") in cluster.jobs  # a sensor never deletes

    def test_failed_raises_with_reason(self, cluster, ti):
        cluster.add("job", jobStatus="Failed", reason="BackoffLimitExceeded", message="3 attempts failed")
        with pytest.raises(
            AirflowException, match="DaskJob ns/job failed: BackoffLimitExceeded: 3 attempts failed"
        ):
            sensor().poke({"ti": ti})
        assert ("ns", "job") in cluster.jobs

    def test_missing_job_fails(self, cluster, ti):
        with pytest.raises(AirflowFailException, match="DaskJob ns/job does not exist"):
            sensor().poke({"ti": ti})

    def test_missing_namespace_fails(self, cluster, ti):
        with pytest.raises(AirflowFailException, match="namespace 'nowhere' does not exist"):
            sensor(namespace="nowhere").poke({"ti": ti})


class TestDeferrable:
    def test_defers_with_keep(self, cluster, ti):
        cluster.add("job", jobStatus="Running")
        with pytest.raises(TaskDeferred) as info:
            sensor(deferrable=True, timeout=60).execute({"ti": ti})
        trigger = info.value.trigger
        assert trigger.on_kill_action == "keep"
        assert trigger.deadline is not None
        cluster.set_status("job", jobStatus="Successful", result="done")
        event = asyncio.run(run_trigger(trigger))
        assert sensor(deferrable=True).execute_complete({"ti": ti}, event) == "done"
        asyncio.run(trigger.on_kill())
        assert ("ns", "job") in cluster.jobs

    def test_already_done_does_not_defer(self, cluster, ti):
        cluster.add("job", jobStatus="Successful", result="[1, 2]")
        assert sensor(deferrable=True).execute({"ti": ti}) == [1, 2]

    def test_timeout_event(self, cluster, ti):
        with pytest.raises(AirflowSensorTimeout, match="did not end within the sensor's timeout"):
            sensor().execute_complete(
                {"ti": ti}, {"status": "timeout", "name": "job", "namespace": "ns", "job_status": "Running"}
            )

    def test_failed_event(self, cluster, ti):
        event = {
            "status": "failed",
            "name": "job",
            "namespace": "ns",
            "reason": "RunnerFailed",
            "message": "m",
        }
        with pytest.raises(AirflowException, match="failed: RunnerFailed: m"):
            sensor().execute_complete({"ti": ti}, event)
