from __future__ import annotations

import json

import pytest

from dask_operator_provider.utils.daskjob import (
    LABEL_DAG_ID,
    LABEL_FINISHED,
    LABEL_RUN_ID,
    DaskJobInputError,
    build_job,
    check_name,
    failure_message,
    identity_selector,
    load_job,
    make_event,
    parse_result,
    safe_label_value,
    sanitize_name,
    set_name,
    ti_identity,
    ti_labels,
    unique_name,
    verdict,
)

MANIFEST = {
    "apiVersion": "kubernetes.dask.org/v1",
    "kind": "DaskJob",
    "metadata": {"name": "example"},
    "spec": {
        "job": {"spec": {"containers": [{"name": "job", "image": "img"}]}},
        "cluster": {
            "spec": {
                "worker": {"replicas": 1, "spec": {"containers": []}},
                "scheduler": {
                    "spec": {"containers": []},
                    "service": {"selector": {"dask.org/cluster-name": "example", "x": "y"}},
                },
            }
        },
    },
}


class TestLoadJob:
    def test_dict_is_copied(self):
        job = load_job(MANIFEST)
        job["metadata"]["name"] = "changed"
        assert MANIFEST["metadata"]["name"] == "example"

    def test_yaml_and_json_text(self):
        import yaml

        assert load_job(yaml.safe_dump(MANIFEST)) == MANIFEST
        assert load_job(json.dumps(MANIFEST)) == MANIFEST

    def test_file_path(self, tmp_path):
        import yaml

        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(MANIFEST))
        assert load_job(str(path)) == MANIFEST

    def test_bare_spec_is_wrapped(self):
        job = load_job(MANIFEST["spec"])
        assert job["kind"] == "DaskJob"
        assert job["apiVersion"] == "kubernetes.dask.org/v1"
        assert job["spec"] == MANIFEST["spec"]

    @pytest.mark.parametrize(
        ("job", "message"),
        [
            ("apiVersion: v1\nkind: Pod\nspec: {}\n", "is not a DaskJob: it is a Pod of apiVersion v1"),
            ({**MANIFEST, "apiVersion": "kubernetes.dask.org/v2"}, "apiVersion kubernetes.dask.org/v2"),
            ("a: [b\n", "not valid YAML"),
            ("/no/such/file.yaml", "does not exist"),
            ("   ", "empty string"),
            ("---\na: 1\n---\nb: 2\n", "exactly one YAML document, not 2"),
            (["a"], "not list"),
            ({"kind": "DaskJob", "apiVersion": "kubernetes.dask.org/v1"}, "has no spec"),
            ({**MANIFEST, "spec": {"job": {}}}, "no spec.job.spec"),
            ({**MANIFEST, "spec": {"job": {"spec": {"containers": []}}}}, "has no container"),
            ({**MANIFEST, "spec": {**MANIFEST["spec"], "clusterRef": {"name": "c"}}}, "it has both"),
            ({**MANIFEST, "spec": {"job": MANIFEST["spec"]["job"]}}, "it has neither"),
            (
                {**MANIFEST, "spec": {"job": MANIFEST["spec"]["job"], "clusterRef": "c"}},
                "spec.clusterRef must",
            ),
        ],
    )
    def test_bad_input_names_the_cause(self, job, message):
        with pytest.raises(DaskJobInputError, match=message.replace("[", r"\[").replace(".", r"\.")):
            load_job(job)


class TestBuildJob:
    def test_own_cluster(self):
        job = build_job(
            image="img", script="print(1)", workers=3, env={"A": 1}, resources={"limits": {"cpu": 1}}
        )
        spec = job["spec"]
        runner = spec["job"]["spec"]["containers"][0]
        assert runner["args"] == ["python", "-c", "print(1)"]
        assert runner["env"] == [{"name": "A", "value": "1"}]
        assert spec["job"]["spec"]["restartPolicy"] == "Never"
        assert spec["job"]["waitForScheduler"] is True
        assert spec["cluster"]["spec"]["worker"]["replicas"] == 3
        assert spec["cluster"]["spec"]["worker"]["spec"]["containers"][0]["resources"] == {
            "limits": {"cpu": 1}
        }
        assert "clusterRef" not in spec
        load_job(job)  # valid by the local checks

    def test_cluster_ref(self):
        job = build_job(image="img", command=["python", "x.py"], cluster_ref="shared")
        assert job["spec"]["clusterRef"] == {"name": "shared"}
        assert "cluster" not in job["spec"]
        assert job["spec"]["job"]["waitForScheduler"] is False
        load_job(job)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"image": "img"}, "exactly one of script"),
            ({"image": "img", "script": "x", "command": ["y"]}, "exactly one of script"),
            ({"image": "img", "command": "python x.py"}, "list of strings"),
            ({"image": "img", "command": []}, "list of strings"),
            ({"image": "", "script": "x"}, "image must be"),
            ({"image": "img", "script": "x", "workers": -1}, "non-negative"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(DaskJobInputError, match=message):
            build_job(**kwargs)


def test_set_name_points_the_service_selector_at_the_name():
    job = load_job(MANIFEST)
    set_name(job, "example-abc123")
    assert job["metadata"]["name"] == "example-abc123"
    selector = job["spec"]["cluster"]["spec"]["scheduler"]["service"]["selector"]
    assert selector == {"dask.org/cluster-name": "example-abc123", "x": "y"}


class TestNames:
    def test_sanitize(self):
        assert sanitize_name("My_DAG.task 1") == "my-dag-task-1"
        assert sanitize_name("123-abc") == "abc"
        assert sanitize_name("___") == "daskjob"
        assert len(sanitize_name("x" * 100)) == 40

    def test_unique_names_are_valid_and_differ(self):
        names = {unique_name("A very long DAG id with spaces and CAPS" * 3) for _ in range(20)}
        assert len(names) == 20
        for name in names:
            check_name(name)
            assert len(name) <= 47

    @pytest.mark.parametrize("name", ["Upper", "1abc", "a" * 54, "abc-", "a_b", ""])
    def test_invalid_names(self, name):
        with pytest.raises(DaskJobInputError, match="is not valid"):
            check_name(name)


class TestLabels:
    def test_safe_label_value(self):
        assert safe_label_value("scheduled__2026-01-01T00_00_00") == "scheduled__2026-01-01T00_00_00"
        long = safe_label_value("manual__2026-01-01T00:00:00+00:00" * 3)
        assert len(long) <= 63
        assert safe_label_value("manual__2026-01-01T00:00:00+00:00") != safe_label_value(
            "manual__2026-01-01T00:00:00-00:00"
        )
        for v in ("a:b", "+x", "x" * 100):
            import re

            assert re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", safe_label_value(v)), v

    def test_labels_and_selector(self):
        identity = ti_identity("dag", "task", "manual__2026-01-01T00:00:00+00:00", None)
        labels = ti_labels(identity, 3)
        assert labels[LABEL_DAG_ID] == "dag"
        assert labels["airflow.apache.org/try-number"] == "3"
        assert labels["airflow.apache.org/map-index"] == "none"
        assert ti_labels(ti_identity("d", "t", "r", 4), 1)["airflow.apache.org/map-index"] == "4"
        assert identity[LABEL_RUN_ID] == "manual__2026-01-01T00:00:00+00:00"
        selector = identity_selector(identity)
        assert f"{LABEL_RUN_ID}={labels[LABEL_RUN_ID]}" in selector
        assert selector.endswith(f"{LABEL_FINISHED}!=true")
        assert "try-number" not in selector


class TestResult:
    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ('{"mean": 1.0001}', {"mean": 1.0001}),
            ("[1, 2]", [1, 2]),
            ("1.5", 1.5),
            ('"s"', "s"),
            ("done: 42", "done: 42"),
            ("", ""),
            (None, None),
        ],
    )
    def test_parse_result(self, text, value):
        assert parse_result(text) == value


def obj(status=None, uid="u1", **extra):
    st = {"jobStatus": status, **extra} if status else dict(extra)
    return {"metadata": {"name": "j", "uid": uid}, "status": st}


class TestVerdict:
    def test_terminal(self):
        ok = verdict(obj("Successful", result='{"a": 1}'), name="j", namespace="ns", uid="u1", now=0)
        assert ok["status"] == "success"
        assert ok["result"] == '{"a": 1}'
        failed = verdict(
            obj("Failed", reason="RunnerFailed", message="exit 1"), name="j", namespace="ns", uid="u1", now=0
        )
        assert (failed["status"], failed["reason"], failed["message"]) == ("failed", "RunnerFailed", "exit 1")
        json.dumps(failed)

    def test_waiting(self):
        assert verdict(obj("Running"), name="j", namespace="ns", uid="u1", now=10, deadline=11) is None
        assert (
            verdict(obj("JobCreated"), name="j", namespace="ns", uid=None, now=10, startup_deadline=11)
            is None
        )

    def test_deadlines(self):
        e = verdict(obj("Running"), name="j", namespace="ns", uid="u1", now=12, deadline=11)
        assert e["status"] == "timeout"
        assert "execution_timeout" in e["message"]
        e = verdict(
            obj("ClusterCreated", reason="ImagePullBackOff", message="image x not found"),
            name="j",
            namespace="ns",
            uid="u1",
            now=12,
            startup_deadline=11,
        )
        assert e["status"] == "timeout"
        assert "startup_timeout_seconds" in e["message"]
        assert "image x not found" in e["message"]
        # Running: the startup deadline no longer applies.
        assert (
            verdict(obj("Running"), name="j", namespace="ns", uid="u1", now=12, startup_deadline=11) is None
        )
        # A verdict beats a deadline.
        assert verdict(obj("Successful"), name="j", namespace="ns", uid="u1", now=12, deadline=11)[
            "status"
        ] == ("success")

    def test_replaced_object(self):
        e = verdict(obj("Successful", uid="u2"), name="j", namespace="ns", uid="u1", now=0)
        assert e["status"] == "error"
        assert "replaced" in e["message"]


class TestFailureMessage:
    def test_failed(self):
        event = make_event(
            "failed",
            obj("Failed", reason="RunnerFailed", message="runner exited 1", result="ValueError: boom"),
            name="j",
            namespace="ns",
        )
        text = failure_message(event)
        assert text == (
            "DaskJob ns/j failed: RunnerFailed: runner exited 1 (termination message: ValueError: boom)"
        )

    def test_timeout_and_error(self):
        assert failure_message({"status": "timeout", "message": "too slow"}) == "too slow"
        assert (
            failure_message({"status": "error", "name": "j", "namespace": "ns", "message": "gone"}) == "gone"
        )
