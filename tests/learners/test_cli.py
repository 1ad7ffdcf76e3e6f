"""The `toolgym` command as a user runs it: held-out splits by default, and a mistake is
one line on stderr with exit status 2."""

import json
import subprocess
import sys

import pytest

from envs.appworld.world import synthetic_world
from learners import cli
from learners.training import evaluate


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
    # the messages are logged in the run's cli.log too; transformers' bars stay quiet
    assert "airline_mini test (2 tasks): pass@1" in (tmp_path / "cli.log").read_text()
    assert "Loading weights" not in done.stderr


def test_an_interrupted_evaluation_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "env=airline_mini", "model=tiny_random", "num_tasks=4", "batch_size=2"]
    args += ["rollout.sampling.max_new_tokens=8", f"out_dir={out}", f"hydra.run.dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", ["toolgym", *args])
    cli.main()
    whole = (out / "eval_groups.jsonl").read_text().splitlines(keepends=True)
    assert len(whole) == 4 and not (out / "eval_groups.partial.jsonl").exists()
    # interrupted after its first batch: that batch's episodes and the config are on disk
    (out / "eval_groups.partial.jsonl").write_text("".join(whole[:2]))
    batches = []
    rollout_groups = evaluate.rollout_groups

    def counted(pool, policy, batch, *rest):
        batches.append(list(batch))
        return rollout_groups(pool, policy, batch, *rest)

    monkeypatch.setattr(evaluate, "rollout_groups", counted)
    monkeypatch.setattr(sys, "argv", ["toolgym", *args])
    cli.main()
    assert "continuing: 2 of 4 tasks already evaluated" in capsys.readouterr().out
    resumed = (out / "eval_groups.jsonl").read_text().splitlines(keepends=True)
    assert resumed[:2] == whole[:2]  # kept as written, not run again
    task_ids = [json.loads(line)["task_id"] for line in resumed]
    assert task_ids == [json.loads(line)["task_id"] for line in whole]
    assert batches == [task_ids[2:]]
