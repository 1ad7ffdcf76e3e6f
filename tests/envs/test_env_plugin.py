"""An env from another installed package: declared under the ``toolgym.envs`` entry-point
group, with its config group on Hydra's search path, it runs through ``toolgym`` without
an edit to this project (docs/ADDING_A_BENCHMARK.md, "From another package")."""

import os
import subprocess
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def install_plugin(site: Path) -> None:
    """What ``pip install`` of a package with that entry point leaves on sys.path."""
    package = site / "their_envs"
    (package / "configs" / "env").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "configs" / "__init__.py").write_text("")
    (package / "env.py").write_text(
        "from envs.airline_mini.env import AirlineMiniEnv\n\n\n"
        "class SmallAirline(AirlineMiniEnv):\n"
        '    """airline_mini under another name, as a separate package ships it."""\n'
    )
    config = (CONFIGS / "env" / "airline_mini.yaml").read_text()
    (package / "configs" / "env" / "small_airline.yaml").write_text(
        config.replace("name: airline_mini", "name: small_airline")
    )
    dist = site / "their_envs-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: their-envs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[toolgym.envs]\nsmall_airline = their_envs.env:SmallAirline\n"
    )


def test_an_env_of_another_package_runs_through_toolgym(tmp_path):
    site = tmp_path / "site"
    install_plugin(site)
    command = [sys.executable, "-m", "learners.cli", "tasks", "env=small_airline"]
    command += [f"hydra.run.dir={tmp_path}", "hydra.searchpath=[pkg://their_envs.configs]"]
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": path}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "small_airline test: 60 tasks" in done.stdout
    # without the package, the name is a one-line mistake
    bare = [c for c in command if not c.startswith("hydra.searchpath")]
    done = subprocess.run(bare, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
