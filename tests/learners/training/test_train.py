"""Every learner trains end to end through the real configs (tiny model, small domain),
writes metrics, an evaluation and a checkpoint, and resumes from it."""

import json
import logging
import math

import pytest
from hydra import compose, initialize_config_dir
from learner_helpers import config
from omegaconf import OmegaConf

from envs.config import ConfigError
from learners.cli import CONFIG_DIR, train_one
from learners.registry import get_learner


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("learner", ["grpo", "grpo_kl", "sdpo", "sgcd", "gear"])
def test_two_steps_then_resume(learner, tmp_path, monkeypatch, caplog):
    train_one(config(learner, "train.steps=2"), tmp_path)
    metrics = lines(tmp_path / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    assert all("train/grad_norm" in m and "rollout/success" in m for m in metrics)
    assert all(m["rollout/groups_drawn"] >= m["rollout/kept_groups"] for m in metrics)
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file()
    (evaluation,) = lines(tmp_path / "eval.jsonl")
    assert evaluation["step"] == 2 and "eval/do_nothing_floor" in evaluation
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["learner"] == learner and run["env"] == "airline_mini"

    train_one(config(learner, "train.steps=3"), tmp_path)  # resumes at step 3
    assert [m["step"] for m in lines(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["step"] == 3

    def no_model(*args, **kwargs):
        raise AssertionError("a finished run loaded a model")

    monkeypatch.setattr("agents.build.load_model", no_model)
    monkeypatch.setattr("agents.model.load_model", no_model)
    caplog.set_level(logging.INFO, logger="toolgym")
    train_one(config(learner, "train.steps=3"), tmp_path)  # finished: says so at once
    assert "already finished 3 steps" in caplog.text


def test_a_round_rolls_out_groups_per_draw_and_trains_on_groups_per_step(tmp_path):
    train_one(config("grpo", "train.steps=1", "train.groups_per_draw=3"), tmp_path)
    (m,) = lines(tmp_path / "metrics.jsonl")
    assert (m["rollout/draws"], m["rollout/groups_drawn"], m["rollout/kept_groups"]) == (1, 3, 1)
    episodes = sum(v for k, v in m.items() if k.startswith("rollout/") and k.endswith("/episodes"))
    assert episodes == 9  # 3 groups of rollout.n=3


@pytest.mark.parametrize("env, held_out", [("airline_mini", "test"), ("appworld", "test_normal")])
def test_commands_evaluate_on_the_envs_held_out_split(env, held_out):
    for command, key in (
        ("evaluate", "env.split"),
        ("train", "eval_split"),
        ("tasks", "env.split"),
    ):
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            c = compose(command, overrides=[f"env={env}"])
        assert OmegaConf.select(c, key) == held_out, command


def test_training_on_a_held_out_split_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="training must not use the held-out 'test' split"):
        train_one(config("grpo", "env.split=test"), tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_start_evaluation_is_computed_or_reused(tmp_path):
    """``eval_at_start`` evaluates the initial model as step 0; ``start_eval`` copies an
    evaluation of it instead, and only when it covers the same tasks."""
    computed = tmp_path / "computed"
    train_one(config("grpo", "train.steps=1", "train.eval_at_start=true"), computed)
    assert [e["step"] for e in lines(computed / "eval.jsonl")] == [0, 1]
    assert (computed / "eval_episodes" / "step_0.jsonl").is_file()
    assert "eval/gold_ceiling" in lines(computed / "eval.jsonl")[0]

    reused = tmp_path / "reused"
    extra = ["train.steps=1", "train.eval_at_start=true", f"train.start_eval={computed}"]
    train_one(config("grpo", *extra), reused)
    assert lines(reused / "eval.jsonl")[0] == lines(computed / "eval.jsonl")[0]
    step_0 = "eval_episodes/step_0.jsonl"
    assert (reused / step_0).read_text() == (computed / step_0).read_text()
    assert [m["train/updated"] for m in lines(reused / "metrics.jsonl")] == [1.0]

    with pytest.raises(ConfigError, match="evaluated 2 tasks, this run evaluates 3"):
        train_one(config("grpo", *extra, "train.eval_tasks=3"), tmp_path / "mismatch")


@pytest.mark.parametrize(
    "learner, extra",
    [
        ("sgcd_no_reference", []),
        ("sgcd_uniform", []),
        ("sgcd_direct_sd", []),
        ("sgcd", ["learner.sd_coef=0.5", "learner.sd_teacher=successful_sibling"]),
        ("sdpo", ["learner.teacher_ema=0.9"]),
        ("grpo", ["learner.credit.scale_by_std=true"]),
    ],
)
def test_every_ablation_and_option_takes_a_real_step(learner, extra, tmp_path):
    """Through the configs, rollout to optimizer step; the loss values themselves are
    checked on a mixed group in test_forward.py and test_losses.py (a random model's
    groups here are rarely mixed)."""
    train_one(config(learner, "train.steps=1", *extra), tmp_path)
    (metrics,) = lines(tmp_path / "metrics.jsonl")
    assert metrics["train/updated"] == 1.0 and math.isfinite(metrics["train/grad_norm"])
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file()
    if learner == "sgcd_direct_sd" or "learner.sd_coef=0.5" in extra:
        assert "loss/sd_masked" in metrics  # the SD term was evaluated


@pytest.mark.parametrize(
    "learner, options, needed",
    [
        ("grpo", {}, False),
        ("gear", {}, False),
        ("sgcd", {}, True),
        ("sgcd", {"credit": {"weighting": "uniform"}}, True),
        ("sgcd", {"credit": {"teacher_context": "successful_sibling"}}, False),
    ],
)
def test_a_learner_says_from_its_config_whether_it_needs_the_analyst(learner, options, needed):
    entry = get_learner(learner)
    assert entry.learner_class.needs_analyst(entry.make_config(options)) is needed
