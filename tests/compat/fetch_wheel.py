"""Fetch a pinned dask-kubernetes wheel from PyPI into the project's cache and read files out of it.

The cache lives outside the work tree, next to the Rust build cache (see the Makefile's CACHE_ROOT):
``${DASK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-~/.cache}/dask-operator}/wheels``. A wheel already there is
reused; otherwise ``pip download --no-deps`` fetches it through pip's ordinary index configuration.

Usable as a script too: ``python3 tests/compat/fetch_wheel.py 2026.3.0`` prints the wheel's path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PROJECT = "dask-kubernetes"
# Where the generated CRDs sit inside the wheel.
CRD_DIR_IN_WHEEL = "dask_kubernetes/operator/deployment/helm/dask-kubernetes-operator/crds"


def cache_root() -> Path:
    """The project's cache directory, resolved like the Makefile's CACHE_ROOT."""
    explicit = os.environ.get("DASK_OPERATOR_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "dask-operator"


def wheel_dir() -> Path:
    return cache_root() / "wheels"


def _wheel_name(version: str) -> str:
    return f"{PROJECT.replace('-', '_')}-{version}-py3-none-any.whl"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(version: str, sha256: str | None = None) -> Path:
    """Return the path of the cached ``dask-kubernetes==version`` wheel, downloading it if needed.

    If ``sha256`` is given, the wheel (cached or fresh) must have that digest.
    """
    dest = wheel_dir()
    target = dest / _wheel_name(version)
    if not target.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        # Download into a private temporary directory, then move into place atomically, so that
        # concurrent runs never see a half-written wheel.
        with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
            cmd = [
                sys.executable, "-m", "pip", "download",
                "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                "--dest", tmp, f"{PROJECT}=={version}",
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n"
                    f"{proc.stdout}\n{proc.stderr}"
                )
            downloaded = Path(tmp) / target.name
            if not downloaded.is_file():
                raise RuntimeError(
                    f"pip download did not produce {target.name}; got {sorted(os.listdir(tmp))}"
                )
            os.replace(downloaded, target)
    if sha256 is not None:
        actual = _sha256(target)
        if actual != sha256:
            raise RuntimeError(
                f"{target}: sha256 {actual} does not match the pinned {sha256}; "
                f"delete the file to download it again"
            )
    return target


def read_crd_texts(wheel: Path) -> dict[str, str]:
    """The CRD YAML files shipped in the wheel, keyed by file name (e.g. ``daskcluster.yaml``)."""
    prefix = CRD_DIR_IN_WHEEL + "/"
    with zipfile.ZipFile(wheel) as zf:
        return {
            name[len(prefix):]: zf.read(name).decode("utf-8")
            for name in zf.namelist()
            if name.startswith(prefix) and name.endswith(".yaml") and "/" not in name[len(prefix):]
        }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} VERSION")
    print(fetch_wheel(sys.argv[1]))
