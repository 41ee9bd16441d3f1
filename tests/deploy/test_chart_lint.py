"""helm lint, strict, with Helm 3 and Helm 4: no error, no warning."""

from __future__ import annotations

import pytest

from chartlib import CASES, CHART, run


@pytest.mark.parametrize("case", ["defaults", "namespaced", "everything"])
def test_helm_lint_strict(helm, case):
    res = run([helm, "lint", "--strict", str(CHART), "--namespace", "dask-operator", *CASES[case]], check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "0 chart(s) failed" in out, out
    for level in ("[ERROR]", "[WARNING]", "[INFO]"):
        assert level not in out, out
