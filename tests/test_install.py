"""`pip install -e .` (the README's first command) makes `stvla_core` importable and the
`stvla-studio` command runnable from any folder. Installed into a throwaway venv that sees this
interpreter's packages through a .pth file, so the shared environment is never touched."""

from __future__ import annotations

import site
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_editable_install_gives_the_package_and_the_console_script(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # this interpreter's packages (gradio, torch, setuptools, pip) without installing them again
    (Path(purelib) / "parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(REPO)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [py, "-c", "import stvla_core, app.main; print(stvla_core.__file__)"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        check=True,
    ).stdout.strip()
    assert Path(where) == REPO / "stvla_core" / "__init__.py"
    script = env_dir / "bin" / "stvla-studio"
    assert script.is_file()
    run = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=elsewhere, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: stvla-studio") and "--policy" in run.stdout
    bad = subprocess.run([script, "--port", "0"], capture_output=True, text=True, cwd=elsewhere, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip() == "stvla-studio: port: expected 1..65535, found 0"
