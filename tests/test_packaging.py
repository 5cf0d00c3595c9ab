"""One import namespace: a wheel installs `envios` and nothing else at the top level.

The repository keeps the original design's folders (sender/, monitor/, simulator/);
pyproject.toml maps them into `envios` (setuptools package-dir). These tests build a
real wheel and install it, and use the editable install the test run itself runs on.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "envios.cli",
    "envios.store.schema",
    "envios.sender.session_worker",
    "envios.sender.gateways.session_manager",
    "envios.monitor.watcher",
    "envios.simulator",
)
PROBE = (
    "import importlib, sys\n"
    "for m in sys.argv[1:]:\n"
    "    print(m, importlib.import_module(m).__file__)"
)


def imported_from(python: str, cwd: Path, extra_path: str | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin"}
    if extra_path:
        env["PYTHONPATH"] = extra_path
    out = subprocess.run(
        [python, "-c", PROBE, *MODULES],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("envios-*.whl")
    return found


def test_the_wheel_installs_one_top_level_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"envios"}
    for folder in ("sender", "monitor", "simulator"):  # mapped in, not installed beside
        assert any(n.startswith(f"envios/{folder}/") for n in names), folder
    assert "envios/store/migrations/base_mysql.sql" in names  # package data travels


def test_the_installed_wheel_imports_from_itself(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    deps = ":".join(p for p in sys.path if p.endswith("site-packages"))
    found = imported_from(sys.executable, tmp_path, f"{target}:{deps}")
    assert set(found) == set(MODULES)
    for module, path in found.items():
        assert path.startswith(str(target / "envios")), (module, path)


def test_the_editable_install_maps_the_repository_folders(tmp_path: Path) -> None:
    found = imported_from(sys.executable, tmp_path)  # outside the checkout: only the install helps
    assert found["envios.cli"] == str(ROOT / "envios" / "cli.py")
    assert found["envios.sender.session_worker"] == str(ROOT / "sender" / "session_worker.py")
    assert found["envios.monitor.watcher"] == str(ROOT / "monitor" / "watcher.py")
    assert found["envios.simulator"] == str(ROOT / "simulator" / "__init__.py")


def test_python_dash_m_envios_is_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "envios"
    via_module = subprocess.run(
        [sys.executable, "-m", "envios", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    via_script = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert via_module.returncode == via_script.returncode == 0
    assert via_module.stdout == via_script.stdout
    assert "gateway-sim" in via_module.stdout and "webhooks" in via_module.stdout
