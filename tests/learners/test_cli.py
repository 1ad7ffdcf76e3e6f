"""The `toolgym` command as a user runs it: held-out splits by default, and a mistake is
one line on stderr with exit status 2."""

import subprocess
import sys

import pytest

from envs.appworld.world import synthetic_world


def toolgym(*args: str, tmp_path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "learners.cli", *args, f"hydra.run.dir={tmp_path}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args, summary",
    [
        (["env=airline_mini"], "airline_mini test: 60 tasks"),
        (["env=appworld", f"env.data_root={synthetic_world()}"], "appworld test_normal: 6 tasks"),
    ],
)
def test_tasks_lists_the_envs_held_out_split_by_default(args, summary, tmp_path):
    done = toolgym("tasks", *args, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert summary in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["tasks", "env=airline_mini", "env.split=nope"], "has no split 'nope'"),
        (["sft", "env=airline_mini", "env.split=test"], "must not use the held-out 'test' split"),
    ],
)
def test_a_user_mistake_is_one_line_and_status_2(args, message, tmp_path):
    done = toolgym(*args, tmp_path=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_evaluate_with_several_episodes_per_task_gives_pass_hat_k(tmp_path):
    out = tmp_path / "eval"
    args = ["env=airline_mini", "model=tiny_random", "num_tasks=2", "rollout.n=2"]
    args += ["rollout.sampling.temperature=1.0", "rollout.sampling.max_new_tokens=8"]
    done = toolgym("evaluate", *args, f"out_dir={out}", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    episodes = (out / "eval_episodes" / "step_0.jsonl").read_text().splitlines()
    assert len(episodes) == 4  # 2 tasks x 2 episodes
    assert "k=1: pass@k" in done.stdout and "k=2: pass@k" in done.stdout
    assert "airline_mini test (2 tasks): pass@1" in done.stdout
