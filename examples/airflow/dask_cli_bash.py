"""The seed's shell-task approach, made declarative: a BashOperator runs ``dask-operator job submit``,
which turns a script into a DaskJob, streams the runner's log into the task log, and exits 0 when the
job is ``Successful`` (non-zero with the reason when it failed), so the task's state is the job's.

``-o json`` prints the final status (``result`` included) on stdout, whose last line the BashOperator
pushes as its XCom; ``check`` reads the mean from it. ``--ttl 0`` removes the DaskJob (and its cluster,
pods and ConfigMap) once it ended. The ``dask-operator`` command is ``$DASK_OPERATOR_CLI`` if set (the
end-to-end tests point it at the binary under test), else the one on ``PATH``; the namespace is the
``kubernetes_default`` connection's.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

try:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.operators.bash import BashOperator

SUBMIT = r"""
set -euo pipefail
script=$(mktemp -d)/mean.py
cat > "$script" <<'PY'
import json
import dask.array as da
from distributed import Client

client = Client()
client.wait_for_workers(1, timeout=300)
x = da.random.random((4000, 4000), chunks=(1000, 1000))
mean = float((x + x.T).mean().compute())
print(f"mean of x + x.T: {mean}")
json.dump({"mean": mean}, open("/dev/termination-log", "w"))
PY
"${DASK_OPERATOR_CLI:-dask-operator}" job submit "$script" \
  --namespace '{{ conn.kubernetes_default.extra_dejson.namespace }}' \
  --name 'cli-mean-{{ ti.try_number }}' --image dask-kubernetes:dev --workers 1 --ttl 0 \
  --wait --delete-on-interrupt -o json | tr -d '\n'
"""

with DAG(
    dag_id="dask_cli_bash",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dask"],
):
    submit = BashOperator(
        task_id="submit",
        bash_command=SUBMIT,
        execution_timeout=timedelta(minutes=10),
    )

    @task
    def check(summary: str) -> float:
        status = json.loads(summary)["status"]
        mean = json.loads(status["result"])["mean"]
        print(f"the DaskJob's mean is {mean} (job status {status['jobStatus']})")
        return mean

    check(submit.output)
