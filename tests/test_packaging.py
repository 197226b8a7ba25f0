"""The package as a user gets it: the metadata, and a wheel that installs and imports alone.

``pip wheel .`` builds the wheel; it is installed with ``--no-deps`` into a fresh virtual
environment that is not this one. That environment borrows torch and the other dependencies
from this one's site-packages through a ``.pth`` line (a path, so this environment's editable
install of gnnkit is not activated there), which keeps the test offline and fast: only gnnkit
itself comes from the wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from importlib.metadata import metadata
from pathlib import Path

import pytest
from conftest import REPO

import gnnkit

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_version_comes_from_the_installed_metadata():
    assert gnnkit.__version__ == metadata("gnnkit")["Version"] == PYPROJECT["version"]


def test_metadata_has_the_license_expression_classifiers_and_typing():
    meta = metadata("gnnkit")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # PEP 639: the expression
    assert (Path(gnnkit.__file__).parent / "py.typed").is_file()


def test_networkx_is_a_test_dependency_only():
    runtime = " ".join(PYPROJECT["dependencies"])
    assert "networkx" not in runtime
    assert any(dep.startswith("networkx") for dep in PYPROJECT["optional-dependencies"]["dev"])
    importing = re.compile(r"^\s*(import|from)\s+networkx\b", re.M)
    imports = [
        path.relative_to(REPO)
        for path in (REPO / "gnnkit").rglob("*.py")
        if importing.search(path.read_text(encoding="utf-8"))
    ]
    assert imports == [], "the library imports networkx: move it back to the dependencies"


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_imports_in_a_fresh_environment(tmp_path):
    # --no-build-isolation: build with this environment's setuptools, offline.
    run(
        sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "--no-build-isolation",
        "--wheel-dir", tmp_path / "dist", "--quiet",
        cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("gnnkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "gnnkit/py.typed" in names and "gnnkit/data/manifest.json" in names
    assert {name.split("/")[0].split("-")[0] for name in names} == {"gnnkit"}, (
        "only the library is installed: no tests, benchmarks or examples"
    )

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    # The dependencies (torch, PyG...) from this environment, as a plain path entry.
    Path(site.strip(), "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet",
        wheel,
        cwd=tmp_path,
    )  # fmt: skip

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    out = run(
        python,
        "-c",
        "import gnnkit; print(gnnkit.__version__); print(gnnkit.__file__); "
        "print(gnnkit.GCNConv(4, 2))",
        cwd=tmp_path,
        env=clean,
    ).splitlines()
    assert out[0] == PYPROJECT["version"]
    assert Path(out[1]).is_relative_to(env_dir), "gnnkit was not imported from the wheel"
    assert out[2] == "GCNConv(4, 2)"
    version = run(env_dir / "bin" / "gnnkit", "--version", cwd=tmp_path, env=clean)
    assert version.strip() == f"gnnkit {PYPROJECT['version']}"
