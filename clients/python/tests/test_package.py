"""`pip install ./clients/python` works offline, as the README says, and
installs a typed package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import HERE


def test_pip_installs_the_package_offline_with_its_types():
    src = HERE.parent
    with tempfile.TemporaryDirectory(prefix="mc-py-pip-") as tmp:
        # A copy: pip builds in the source tree, and tests leave it clean.
        pkg = Path(tmp, "python")
        shutil.copytree(src, pkg, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
        venv = Path(tmp, "venv")
        # The system site packages bring Debian's websockets and setuptools:
        # nothing is downloaded.
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--no-build-isolation",
                              "--disable-pip-version-check", "-q", str(pkg)], capture_output=True, text=True)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        out = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import marketcast, pathlib, importlib.metadata as m;"
                              "p = pathlib.Path(marketcast.__file__).parent;"
                              "print(m.version('marketcast'), (p / 'py.typed').exists(), 'site-packages' in str(p))"],
                             capture_output=True, text=True, cwd=tmp)
        assert out.stdout.split() == ["0.1.0", "True", "True"], out.stdout + out.stderr
