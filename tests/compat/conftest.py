"""Shared fixtures of the compatibility tests: our CRDs, as printed by the operator binary."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from fetch_wheel import cache_root

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cargo_env() -> dict[str, str]:
    """The environment for cargo: CARGO_TARGET_DIR as the Makefile sets it, when the caller has not."""
    env = dict(os.environ)
    if not env.get("CARGO_TARGET_DIR"):
        # Same place as the Makefile's $(CACHE_ROOT)/cargo-target/rust-$(RUST_VERSION), so that running
        # pytest directly reuses the build of `make` instead of starting one in ./target.
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout.split()
        env["CARGO_TARGET_DIR"] = str(cache_root() / "cargo-target" / f"rust-{rustc[1]}")
    return env


def _crd_command() -> tuple[list[str], dict[str, str] | None]:
    """`$DASK_OPERATOR_BIN crd`, or `cargo run --quiet -- crd` in the repository when it is unset."""
    binary = os.environ.get("DASK_OPERATOR_BIN")
    if binary:
        return [binary, "crd"], None
    return ["cargo", "run", "--quiet", "--", "crd"], _cargo_env()


@pytest.fixture(scope="session")
def our_crds() -> dict[str, dict]:
    """Our four CRDs keyed by kind, from `dask-operator crd` (a multi-document YAML stream)."""
    cmd, env = _crd_command()
    cwd = REPO_ROOT
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(
            f"`{shlex.join(cmd)}` (in {cwd}) exited {proc.returncode}:\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    crds = {}
    for doc in yaml.safe_load_all(proc.stdout):
        if doc is None:
            continue
        assert doc.get("kind") == "CustomResourceDefinition", f"`{shlex.join(cmd)}` printed a {doc.get('kind')!r}"
        kind = doc["spec"]["names"]["kind"]
        assert kind not in crds, f"`{shlex.join(cmd)}` printed the {kind} CRD twice"
        crds[kind] = doc
    return crds
