"""The classic Dask computation handed to Dask as a DaskJob: the mean of ``x + x.T`` for a random array.

``DaskJobOperator`` makes a DaskJob (a runner pod and a DaskCluster of two workers, managed by
dask-operator), waits for it in the triggerer (``deferrable=True``), copies the runner's log into the task
log and returns the runner's termination message parsed as JSON; ``check`` uses that XCom.

The namespace is the ``kubernetes_default`` connection's (extra ``namespace``); the image
``dask-kubernetes:dev`` is the one the local cluster has (``imagePullPolicy: IfNotPresent``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dask_operator_provider.operators.daskjob import DaskJobOperator

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

IMAGE = "dask-kubernetes:dev"

# The runner writes its result as JSON to /dev/termination-log: dask-operator copies it into the
# DaskJob's status.result, and the operator returns it as the task's XCom.
MEAN = """
import json
import dask.array as da
from distributed import Client

client = Client()  # the address comes from DASK_SCHEDULER_ADDRESS
client.wait_for_workers(2, timeout=300)
x = da.random.random((5000, 5000), chunks=(1000, 1000))
mean = float((x + x.T).mean().compute())
print(f"mean of x + x.T: {mean}")
with open("/dev/termination-log", "w") as f:
    json.dump({"mean": mean, "shape": [5000, 5000]}, f)
"""

with DAG(
    dag_id="dask_mean",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dask"],
):
    mean = DaskJobOperator(
        task_id="mean",
        image=IMAGE,
        script=MEAN,
        workers=2,
        deferrable=True,
        poll_interval=2,
        startup_timeout_seconds=300,
        execution_timeout=timedelta(minutes=10),
    )

    @task
    def check(result: dict) -> float:
        value = result["mean"]
        print(f"the DaskJob's mean is {value}")
        if abs(value - 1.0) > 0.01:
            raise ValueError(f"mean {value} is not close to 1.0")
        return value

    check(mean.output)
