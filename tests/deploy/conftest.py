"""Fixtures of tests/deploy (helpers and the how-to-run note: chartlib.py)."""

import pytest

from chartlib import HELMS, binary


@pytest.fixture(params=HELMS)
def helm(request) -> str:
    """Each test that takes `helm` runs once with Helm 3 and once with Helm 4."""
    return binary(request.param)


@pytest.fixture
def helm3() -> str:
    return binary("HELM3")


@pytest.fixture
def helm4() -> str:
    return binary("HELM4")


@pytest.fixture
def kubectl() -> str:
    return binary("KUBECTL")
