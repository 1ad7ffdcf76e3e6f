"""`toolgym compare parallel=2` trains its runs in two processes and writes what the same
comparison writes one run after another: every run's evaluations, episodes and report."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _compare(
    out: Path,
    parallel: int,
    tmp_path: Path,
    runs: tuple[str, str] = ("learners=[grpo,sgcd]", "seeds=[0,1]"),
    threads: int = 1,
    steps: int = 1,
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "learners.cli",
        "compare",
        "env=airline_mini",
        "model=tiny_random",
        *runs,
        "credit_llm.model=tiny-random",
        "credit_llm.max_tokens=8",
        f"train.steps={steps}",
        "train.groups_per_step=1",
        "train.dynamic_sampling=false",
        "train.eval_every=1",
        "train.eval_tasks=6",
        "rollout.n=2",
        "rollout.sampling.max_new_tokens=8",
        "eval_batch=6",
        f"parallel={parallel}",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / f'hydra{out.name}'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
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
    # one thread either way: the same arithmetic, so the same episodes
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


def test_the_last_run_training_takes_every_thread(tmp_path):
    """grpo-seed0 is already finished, so once its process has seen that, grpo-seed1
    trains alone: from its next step on it takes both threads."""
    out = tmp_path / "share"
    grpo = "learners=[grpo]"
    _compare(out, 1, tmp_path, runs=(grpo, "seeds=[0]"), threads=2, steps=2)
    done = _compare(out, 2, tmp_path, runs=(grpo, "seeds=[0,1]"), threads=2, steps=2)
    assert "2 runs, 2 at a time, 1 thread(s) each" in done.stdout
    assert "already finished 2 steps" in done.stdout
    steps = [json.loads(line) for line in (out / "grpo-seed1" / "metrics.jsonl").open()]
    assert [s["time/threads"] for s in steps][-1] == 2


def _run_process_holder(pids) -> None:
    """A stand-in compare process: spawns one run process, which calls what compare's run
    initializer calls first, and waits."""
    child = multiprocessing.get_context("spawn").Process(target=_run_forever, args=(pids,))
    child.start()
    time.sleep(600)


def _run_forever(pids) -> None:
    from learners.cli import die_with_parent

    die_with_parent()
    pids.put(os.getpid())
    time.sleep(600)


def test_a_run_process_ends_when_its_compare_process_is_killed():
    context = multiprocessing.get_context("spawn")
    pids = context.Queue()
    holder = context.Process(target=_run_process_holder, args=(pids,))
    holder.start()
    run = pids.get(timeout=60)
    os.kill(holder.pid, signal.SIGKILL)  # the compare process alone, as `kill -9 <pid>`
    holder.join()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(run):
        time.sleep(0.1)
    assert not _alive(run)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    stat = Path(f"/proc/{pid}/stat")
    return stat.is_file() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
