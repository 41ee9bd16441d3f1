"""The generic path, with no Dask-specific operator for creating: the cncf-kubernetes provider's
``KubernetesCreateResourceOperator`` applies a DaskJob manifest, ``DaskJobSensor`` waits for it (deferred),
and ``KubernetesDeleteResourceOperator`` deletes it whatever happened (``trigger_rule="all_done"``).

The name is templated with the run's timestamp, so that a second run does not collide with the first.
The namespace is the ``kubernetes_default`` connection's (extra ``namespace``).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.resource import (
    KubernetesCreateResourceOperator,
    KubernetesDeleteResourceOperator,
)

from dask_operator_provider.sensors.daskjob import DaskJobSensor

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

NAME = "mean-{{ ts_nodash | lower }}"

# The DaskJob as `kubectl apply` would take it (examples/daskjob.yaml with the local image, a runner
# that does not restart and a result written to the termination log).
MANIFEST = """
apiVersion: kubernetes.dask.org/v1
kind: DaskJob
metadata:
  name: __NAME__
spec:
  job:
    waitForScheduler: true
    spec:
      restartPolicy: Never
      containers:
        - name: job
          image: dask-kubernetes:dev
          imagePullPolicy: IfNotPresent
          args:
            - python
            - -c
            - |
              import json
              import dask.array as da
              from distributed import Client

              client = Client()
              client.wait_for_workers(2, timeout=300)
              x = da.random.random((5000, 5000), chunks=(1000, 1000))
              mean = float((x + x.T).mean().compute())
              print(f"mean of x + x.T: {mean}")
              with open("/dev/termination-log", "w") as f:
                  json.dump({"mean": mean}, f)
  cluster:
    spec:
      worker:
        replicas: 2
        spec:
          containers:
            - name: worker
              image: dask-kubernetes:dev
              imagePullPolicy: IfNotPresent
              args: [dask-worker, --name, $(DASK_WORKER_NAME), --nthreads, "1", --dashboard-address, "8788"]
              ports:
                - {name: http-dashboard, containerPort: 8788, protocol: TCP}
      scheduler:
        spec:
          containers:
            - name: scheduler
              image: dask-kubernetes:dev
              imagePullPolicy: IfNotPresent
              args: [dask-scheduler]
              ports:
                - {name: tcp-comm, containerPort: 8786, protocol: TCP}
                - {name: http-dashboard, containerPort: 8787, protocol: TCP}
              readinessProbe:
                httpGet: {port: http-dashboard, path: /health}
                initialDelaySeconds: 2
                periodSeconds: 2
        service:
          type: ClusterIP
          selector:
            dask.org/cluster-name: __NAME__
            dask.org/component: scheduler
          ports:
            - {name: tcp-comm, protocol: TCP, port: 8786, targetPort: tcp-comm}
            - {name: http-dashboard, protocol: TCP, port: 8787, targetPort: http-dashboard}
""".replace("__NAME__", NAME)

with DAG(
    dag_id="dask_generic",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dask"],
):
    create = KubernetesCreateResourceOperator(
        task_id="create",
        yaml_conf=MANIFEST,
        custom_resource_definition=True,
    )
    wait = DaskJobSensor(
        task_id="wait",
        name=NAME,
        deferrable=True,
        poke_interval=2,
        timeout=600,
    )
    delete = KubernetesDeleteResourceOperator(
        task_id="delete",
        yaml_conf=MANIFEST,
        custom_resource_definition=True,
        trigger_rule="all_done",
    )
    create >> wait >> delete
