"""Airflow provider for DaskJobs (``kubernetes.dask.org/v1``) served by dask-operator."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "airflow-provider-dask-operator",
        "name": "Dask Operator",
        "description": "Run DaskJobs (kubernetes.dask.org/v1) served by dask-operator from Airflow.",
        "versions": [__version__],
        "operators": [
            {
                "integration-name": "Dask Operator",
                "python-modules": ["dask_operator_provider.operators.daskjob"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Dask Operator",
                "python-modules": ["dask_operator_provider.sensors.daskjob"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Dask Operator",
                "python-modules": ["dask_operator_provider.hooks.daskjob"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Dask Operator",
                "python-modules": ["dask_operator_provider.triggers.daskjob"],
            }
        ],
        "integrations": [
            {
                "integration-name": "Dask Operator",
                "external-doc-url": "https://kubernetes.dask.org/",
                "tags": ["software"],
            }
        ],
    }
