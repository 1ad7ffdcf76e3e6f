"""A user's mistake on the command line is one line on stderr and exit status 2, found
before any model loads or run starts; help lists the commands and a command's options."""

import sys

import pytest

from learners import cli

# (arguments, a part of the one line expected); none may load a model or start work
BAD_INPUTS = [
    (["evaluat"], "no command 'evaluat' (did you mean 'evaluate'?)"),
    (["evaluate", "env=foo"], "env=foo: no such env"),
    (["train", "learner=foo"], "learner=foo: no such learner"),
    (["train", "learner=grp"], "(did you mean 'grpo'?)"),
    (["evaluate", "env.splt=test"], "env has no key 'splt' (did you mean 'split'?)"),
    (["train", "train.stpes=3"], "train has no key 'stpes' (did you mean 'steps'?)"),
    (["evaluate", "nm_tasks=3"], "has no key 'nm_tasks' (did you mean 'num_tasks'?)"),
    (["evaluate", "env=[a"], "cannot parse override 'env=[a'"),
    (["train", "learner=sft"], "SFT has its own command"),
    (["train", "learner.name=foo"], "unknown learner 'foo'"),
    (["train", "train.steps=abc"], "train.steps='abc': expected int"),
    (["train", "train.lr=fast"], "train.lr='fast': expected float"),
    (["train", "train.dynamic_sampling=3"], "train.dynamic_sampling=3: expected bool"),
    (["train", "train.loss_aggregation=foo"], "loss_aggregation must be one of"),
    (["train", "train.autocast=fp16"], "train.autocast=fp16: no such dtype"),
    (["train", "learner.clip_low=wide"], "learner grpo"),
    (["train", "tracking.backends=[mlflow]"], "unknown backends ['mlflow']"),
    (["evaluate", "num_tasks=abc"], "num_tasks='abc': expected a whole number"),
    (["evaluate", "num_tasks=0"], "num_tasks=0: expected a whole number"),
    (["evaluate", "batch_size=null"], "batch_size=None: expected a whole number"),
    (["evaluate", "model.dtype=fp8"], "model.dtype=fp8: no such dtype"),
    (
        ["evaluate", "model.init_from=/nonexistent"],
        "model.init_from=/nonexistent: not a checkpoint",
    ),
    (["evaluate", "rollout.backend=tgi"], "rollout.backend=tgi: no such backend"),
    (["evaluate", "rollout.backend=vllm"], "rollout.backend=vllm loads a checkpoint"),
    (["evaluate", "rollout.sampling.max_new_tokens=many"], "max_new_tokens='many'"),
    (["evaluate", "out_dir=/proc/x"], "out_dir=/proc/x: cannot write there"),
    (["sft", "out_dir=/proc/x"], "out_dir=/proc/x: cannot write there"),
    (["sft", "source=web"], "source=web: no such source"),
    (["sft", "learner.steps=-"], "learner sft.steps='-': expected int"),
    (["compare", "learners=[grpo,foo]"], "learner=foo: no such learner"),
    (["compare", "baseline=gear"], "baseline=gear: not among learners"),
    (["compare", "learners=[grpo,sft]"], "SFT has its own command"),
    (["compare", "seeds=[0,x]"], "seeds: 'x' is not a whole number"),
    (["train", "learner=sgcd", "credit_llm=anthropic"], "set ANTHROPIC_API_KEY"),
    (["train", "learner=sgcd", "credit_llm.max_tokens=lots"], "max_tokens='lots': expected int"),
    (["sft", "source=teacher"], "source=teacher needs teacher="),
    (["train", "env=appworld", "env.data_root=/nonexistent"], "no AppWorld data under"),
    (["evaluate", "env.max_turns=x"], "max_turns='x': expected int"),
    # keys/values at full context past any machine's memory (~20 TB)
    (["evaluate", "batch_size=100000"], "lower batch_size or rollout.max_context_tokens"),
    (["train", "eval_batch=100000"], "lower eval_batch or rollout.max_context_tokens"),
    (["compare", "parallel=2", "eval_batch=100000"], "x parallel=2 can hold"),
]


def run_cli(monkeypatch, capsys, args, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setattr(sys, "argv", ["toolgym", *args, f"hydra.run.dir={tmp_path}"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_a_mistake_is_one_line_and_status_2_before_any_work(
    monkeypatch, capsys, tmp_path, args, message
):
    code, out, err = run_cli(monkeypatch, capsys, args, tmp_path)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
    # nothing started: no model loaded (its precision line), no episodes or records written
    assert "weights" not in out and not list(tmp_path.rglob("*.jsonl"))


def test_help_lists_every_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["toolgym", "--help"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    out = capsys.readouterr().out
    assert done.value.code == 0
    for name in cli.COMMANDS:
        assert f"  {name} " in out


def test_a_commands_help_shows_its_own_groups_and_options(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["toolgym", "train", "--help"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert out.startswith("toolgym train: Train one learner")
    assert "learner: gear, grpo," in out and "(now grpo)" in out
    assert "train.steps=" in out and "Hydra" not in out


def test_no_command_is_a_mistake_with_the_usage(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["toolgym"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 2 and "commands:" in capsys.readouterr().err


def test_parallel_runs_multiply_the_keys_values_a_machine_must_hold(monkeypatch):
    from envs.config import ConfigError
    from learners import preflight

    c = {
        "rollout": {"backend": "hf", "max_context_tokens": 1000},
        "model": {"name": "tiny-random", "dtype": "float32", "device": "cpu"},
    }
    one_run = preflight.KV_PEAK_COPIES * 10 * 1000 * 512  # tiny-random: 512 B a token
    room = 1.5 * one_run / preflight.KV_MEMORY_SHARE
    monkeypatch.setattr(preflight, "machine_memory_bytes", lambda: int(room))
    preflight.check_memory(c, 10, "eval_batch", processes=1)
    with pytest.raises(ConfigError, match="eval_batch=10 rows .* x parallel=2 can hold"):
        preflight.check_memory(c, 10, "eval_batch", processes=2)
