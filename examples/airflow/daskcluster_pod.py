"""A long-lived Dask cluster made declarative: a DaskCluster managed by dask-operator, and a
``KubernetesPodOperator`` whose pod runs a ``distributed.Client`` against its scheduler Service
``tcp://<cluster>-scheduler.<namespace>.svc.cluster.local:8786`` (the way a PythonOperator holding a Client
against a hand-kept cluster used to do it). The cluster is deleted at the end whatever happened.

The namespace is the ``kubernetes_default`` connection's (extra ``namespace``); the pod learns it from the
downward API.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.operators.resource import (
    KubernetesCreateResourceOperator,
    KubernetesDeleteResourceOperator,
)
from kubernetes.client import models as k8s

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

IMAGE = "dask-kubernetes:dev"
CLUSTER = "cluster-{{ ts_nodash | lower }}"

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
          ports:
            - {{name: http-dashboard, containerPort: 8788, protocol: TCP}}
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

CLIENT = (
    """
import os
import dask.array as da
from distributed import Client

address = f"tcp://CLUSTER-scheduler.{os.environ['POD_NAMESPACE']}.svc.cluster.local:8786"
client = Client(address, timeout=300)  # waits for the scheduler to answer
client.wait_for_workers(2, timeout=300)
x = da.random.random((5000, 5000), chunks=(1000, 1000))
mean = float((x + x.T).mean().compute())
print(f"mean of x + x.T on {address}: {mean}")
assert abs(mean - 1.0) < 0.01, mean
"""
).replace("CLUSTER", CLUSTER)

with DAG(
    dag_id="dask_cluster_pod",
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
    client = KubernetesPodOperator(
        task_id="client",
        name="dask-client",
        image=IMAGE,
        image_pull_policy="IfNotPresent",
        cmds=["python", "-c", CLIENT],
        env_vars=[
            k8s.V1EnvVar(
                name="POD_NAMESPACE",
                value_from=k8s.V1EnvVarSource(
                    field_ref=k8s.V1ObjectFieldSelector(field_path="metadata.namespace")
                ),
            )
        ],
        get_logs=True,
        on_finish_action="delete_pod",
        startup_timeout_seconds=300,
    )
    delete = KubernetesDeleteResourceOperator(
        task_id="delete_cluster",
        yaml_conf=DASKCLUSTER,
        custom_resource_definition=True,
        trigger_rule="all_done",
    )
    cluster >> client >> delete
