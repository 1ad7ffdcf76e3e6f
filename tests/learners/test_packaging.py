"""The wheel is complete: installed into a fresh venv, ``toolgym`` runs from another
directory (its Hydra configs ship inside it)."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_runs_toolgym_from_a_fresh_venv(tmp_path):
    # built from a copy of the sources: setuptools would reuse a build/ left in the checkout
    source, dist, fresh = tmp_path / "source", tmp_path / "dist", tmp_path / "fresh"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "outputs", "*.egg-info")
    )
    build = ["pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", dist]
    subprocess.run([sys.executable, "-m", *build], check=True, cwd=tmp_path)
    (wheel,) = dist.glob("toolgym-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", fresh], check=True)
    site = fresh / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = site / "site-packages"
    # the dependencies come from this venv's site-packages, whose .pth files (the editable
    # install of this checkout among them) a path listed in a .pth does not run
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: pip would otherwise uninstall this checkout's editable install first
    install = ["pip", "install", "--no-deps", "--ignore-installed", "-q", "--prefix", fresh, wheel]
    subprocess.run([sys.executable, "-m", *install], check=True)
    done = subprocess.run(
        [fresh / "bin" / "python", fresh / "bin" / "toolgym", "tasks", "env=airline_mini"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "airline_mini test: 60 tasks" in done.stdout
    where = [fresh / "bin" / "python", "-c", "import learners; print(learners.__file__)"]
    module = subprocess.run(where, cwd=tmp_path, capture_output=True, text=True, check=True)
    module = module.stdout
    assert module.startswith(str(site)), module  # not this checkout
