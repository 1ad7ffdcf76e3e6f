"""Where the synthetic AppWorld world lives, and building it when it is missing or stale.

The world is built by ``envs/appworld/synthetic.py`` inside the AppWorld venv (``make``
does it once per machine); tests and demos call :func:`synthetic_world` to get its root,
which rebuilds it if the builder changed since (its sha256 is recorded in ``STAMP``).
"""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

from envs.appworld.server import AppWorldServerError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILDER = Path(__file__).with_name("synthetic.py")
SYNTHETIC_ROOT = REPO_ROOT / ".cache" / "appworld-synthetic"
APPWORLD_PYTHON = REPO_ROOT / ".venv-appworld" / "bin" / "python"
STAMP = "STAMP"  # written by the builder


@cache
def synthetic_world(root: Path = SYNTHETIC_ROOT, python: Path = APPWORLD_PYTHON) -> Path:
    """The synthetic world's root (pass it as ``data_root``), built first if needed."""
    stamp = root / STAMP
    digest = hashlib.sha256(BUILDER.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return root
    if not python.exists():
        raise AppWorldServerError(
            f"no AppWorld venv at {python}: `make test` (or `make appworld`) creates it"
        )
    result = subprocess.run(
        [str(python), str(BUILDER), str(root)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AppWorldServerError(f"building the synthetic AppWorld world failed:\n{result.stderr}")
    return root
