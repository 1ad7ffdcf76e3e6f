"""`toolgym compare parallel=2` trains its runs in two processes and writes what the same
comparison writes one run after another: every run's evaluations, episodes and report."""

import json
import os
import subprocess
import sys
from pathlib import Path


def _compare(out: Path, parallel: int, tmp_path: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "learners.cli",
        "compare",
        "env=airline_mini",
        "model=tiny_random",
        "learners=[grpo,sgcd]",
        "seeds=[0,1]",
        "credit_llm.model=tiny-random",
        "credit_llm.max_tokens=8",
        "train.steps=1",
        "train.groups_per_step=1",
        "train.dynamic_sampling=false",
        "train.eval_every=1",
        "train.eval_tasks=6",
        "rollout.n=2",
        "rollout.sampling.max_new_tokens=8",
        "eval_batch=6",
        f"parallel={parallel}",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / f'hydra{parallel}'}",
    ]
    # one thread either way: the same arithmetic, so the same episodes
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _written(out: Path) -> dict[str, str]:
    runs = sorted(p.name for p in out.iterdir() if p.name != "report")
    return {
        f"{run}/{name}": (out / run / name).read_text()
        for run in runs
        for name in ("eval.jsonl", "eval_episodes/step_1.jsonl")
    }


def test_runs_in_two_processes_write_what_one_process_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _compare(one, 1, tmp_path)
    done = _compare(two, 2, tmp_path)
    written = _written(two)
    assert len(written) == 8  # 2 learners x 2 seeds, each evaluation and its episodes
    assert written == _written(one)
    assert "4 runs, 2 at a time, 1 thread(s) each" in done.stdout
    for run in ("grpo-seed0", "grpo-seed1", "sgcd-seed0", "sgcd-seed1"):
        assert f"finished: {run}" in done.stdout
        assert f"[{run}] " in done.stdout  # its messages, named
        assert "updates:" in (two / run / "train.log").read_text()
    assert _untimed(two) == _untimed(one)


def _untimed(out: Path) -> dict:
    """The report's results without wall times (``*_s``), which differ run to run."""
    results = json.loads((out / "report" / "results.json").read_text())
    for learner in results["learners"]:
        timed = [k for k in learner["diagnostics"] if k.endswith("_s")]
        assert timed  # the report does carry timings; only they are left out
        for k in timed:
            del learner["diagnostics"][k]
    return results
