"""The README's offline install command works, as written, and installs a
typed package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import HERE, ROOT


def test_the_readmes_offline_pip_install_works_and_installs_the_types():
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "pip install" in b and ".venv" in b)
    with tempfile.TemporaryDirectory(prefix="mc-py-pip-") as tmp:
        # A copy of clients/python where the README's command expects it: pip
        # builds in the source tree, and tests leave the tree clean.
        shutil.copytree(HERE.parent, Path(tmp, "clients", "python"),
                        ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
        # python3 is Debian's, whose site packages hold websockets and setuptools.
        bindir = Path(tmp, "bin")
        bindir.mkdir()
        (bindir / "python3").symlink_to(sys.executable)
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp, env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        out = subprocess.run([str(Path(tmp, ".venv", "bin", "python")), "-c",
                              "import marketcast, pathlib, importlib.metadata as m;"
                              "p = pathlib.Path(marketcast.__file__).parent;"
                              "print(m.version('marketcast'), (p / 'py.typed').exists(), 'site-packages' in str(p))"],
                             capture_output=True, text=True, cwd=tmp)
        assert out.stdout.split() == ["0.1.0", "True", "True"], out.stdout + out.stderr
