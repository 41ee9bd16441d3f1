"""Several tasks of one DAG send DaskJobs to one shared DaskCluster through ``clusterRef``: the cluster is
made once (``KubernetesCreateResourceOperator``), three ``DaskJobOperator`` tasks run on it (their jobs
wait until it is Running and never modify or delete it), a task adds their results, and the cluster is
deleted at the end whatever happened.

The namespace is the ``kubernetes_default`` connection's (extra ``namespace``).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.resource import (
    KubernetesCreateResourceOperator,
    KubernetesDeleteResourceOperator,
)

from dask_operator_provider.operators.daskjob import DaskJobOperator

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

IMAGE = "dask-kubernetes:dev"
CLUSTER = "shared-{{ ts_nodash | lower }}"

DASKCLUSTER = f"""
apiVersion: kubernetes.dask.org/v1
kind: DaskCluster
metadata:
  name: {CLUSTER}
spec:
  worker:
    replicas: 2
    spec:
      containers:
        - name: worker
          image: {IMAGE}
          imagePullPolicy: IfNotPresent
          args: [dask-worker, --name, $(DASK_WORKER_NAME), --nthreads, "1", --dashboard-address, "8788"]
  scheduler:
    spec:
      containers:
        - name: scheduler
          image: {IMAGE}
          imagePullPolicy: IfNotPresent
          args: [dask-scheduler]
          ports:
            - {{name: tcp-comm, containerPort: 8786, protocol: TCP}}
            - {{name: http-dashboard, containerPort: 8787, protocol: TCP}}
          readinessProbe:
            httpGet: {{port: http-dashboard, path: /health}}
            initialDelaySeconds: 2
            periodSeconds: 2
    service:
      type: ClusterIP
      selector:
        dask.org/cluster-name: {CLUSTER}
        dask.org/component: scheduler
      ports:
        - {{name: tcp-comm, protocol: TCP, port: 8786, targetPort: tcp-comm}}
        - {{name: http-dashboard, protocol: TCP, port: 8787, targetPort: http-dashboard}}
"""

# Part `PART` of 3 of sum(range(3_000_000)), computed on the shared cluster.
PART = """
import json
import dask.array as da
from distributed import Client

client = Client()  # DASK_SCHEDULER_ADDRESS: the shared cluster's scheduler
n = 1_000_000
total = int(da.arange(PART * n, (PART + 1) * n, chunks=100_000).sum().compute())
print(f"part PART: {total}")
with open("/dev/termination-log", "w") as f:
    json.dump({"part": PART, "sum": total}, f)
"""

with DAG(
    dag_id="dask_shared_cluster",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dask"],
):
    cluster = KubernetesCreateResourceOperator(
        task_id="create_cluster",
        yaml_conf=DASKCLUSTER,
        custom_resource_definition=True,
    )
    parts = [
        DaskJobOperator(
            task_id=f"part_{i}",
            image=IMAGE,
            script=PART.replace("PART", str(i)),
            cluster_ref=CLUSTER,
            poll_interval=2,
            startup_timeout_seconds=300,
        )
        for i in range(3)
    ]

    @task
    def add(results: list[dict]) -> int:
        total = sum(r["sum"] for r in results)
        expected = sum(range(3_000_000))
        print(f"sum of the parts: {total} (expected {expected})")
        if total != expected:
            raise ValueError(f"{total} != {expected}")
        return total

    delete = KubernetesDeleteResourceOperator(
        task_id="delete_cluster",
        yaml_conf=DASKCLUSTER,
        custom_resource_definition=True,
        trigger_rule="all_done",
    )
    total = add([p.output for p in parts])
    cluster >> parts
    total >> delete
    for p in parts:
        p >> delete
