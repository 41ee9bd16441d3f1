"""The package as Airflow sees it: entry point, provider info, typing marker, example DAGs."""

from __future__ import annotations

import json
import pathlib
from importlib import metadata, resources

import pytest

import dask_operator_provider

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLES = HERE.parents[3] / "examples" / "airflow"
E2E_DAGS = HERE.parent / "e2e" / "dags"


def test_entry_point_is_registered():
    eps = metadata.entry_points(group="apache_airflow_provider")
    ours = [ep for ep in eps if ep.value == "dask_operator_provider:get_provider_info"]
    assert len(ours) == 1
    assert ours[0].name == "provider_info"
    assert ours[0].dist.name == "airflow-provider-dask-operator"


def test_provider_info_is_valid():
    jsonschema = pytest.importorskip("jsonschema")
    import airflow

    schema_path = pathlib.Path(airflow.__file__).parent / "provider_info.schema.json"
    info = dask_operator_provider.get_provider_info()
    jsonschema.validate(info, json.loads(schema_path.read_text()))
    assert info["package-name"] == metadata.metadata("airflow-provider-dask-operator")["Name"]
    assert info["versions"] == [metadata.version("airflow-provider-dask-operator")]
    for kind in ("operators", "sensors", "triggers", "hooks"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                __import__(module)


def test_providers_manager_finds_it():
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "airflow-provider-dask-operator" in providers
    assert providers["airflow-provider-dask-operator"].version == dask_operator_provider.__version__


def test_typed():
    assert resources.files("dask_operator_provider").joinpath("py.typed").is_file()


def test_example_dags_import():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag

    ids = set()
    for folder in (EXAMPLES, E2E_DAGS):
        bag = (
            DagBag(dag_folder=str(folder), include_examples=False)
            if _has_examples_arg(DagBag)
            else DagBag(dag_folder=str(folder))
        )
        assert bag.import_errors == {}
        ids |= set(bag.dag_ids)
    assert ids == {
        "dask_mean",
        "dask_generic",
        "dask_cluster_pod",
        "dask_shared_cluster",
        "dask_cli_bash",
        "dask_failing",
    }


def _has_examples_arg(cls) -> bool:
    import inspect

    return "include_examples" in inspect.signature(cls.__init__).parameters


def test_example_manifests_keep_the_worker_name_variable():
    """The templating of the examples must leave $(DASK_WORKER_NAME) alone: workers sharing one literal
    name are refused by the scheduler ("name taken")."""
    import importlib.util

    import yaml

    for file, attr in [
        ("daskjob_generic.py", "MANIFEST"),
        ("daskcluster_pod.py", "DASKCLUSTER"),
        ("daskjob_shared_cluster.py", "DASKCLUSTER"),
    ]:
        spec = importlib.util.spec_from_file_location(file[:-3], EXAMPLES / file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        manifest = yaml.safe_load(getattr(module, attr))
        cluster = manifest["spec"]["cluster"]["spec"] if manifest["kind"] == "DaskJob" else manifest["spec"]
        args = cluster["worker"]["spec"]["containers"][0]["args"]
        assert args[args.index("--name") + 1] == "$(DASK_WORKER_NAME)", (file, args)
        name = manifest["metadata"]["name"]
        assert cluster["scheduler"]["service"]["selector"]["dask.org/cluster-name"] == name
