"""A credit that waits on a hosted analyst runs beside the update's forward and gives the
update it would give computed first; errors in it reach the update."""

import copy
import json
import threading
import time
from dataclasses import replace

import pytest
import torch
from conftest import FixedAnalyst

from credit import get_credit
from learners.registry import LearnerContext, get_learner
from learners.training.pending_credit import PendingCredit
from learners.training.train import backward_groups

LATENCY_S = 0.5  # long against the tiny model's forward


class SlowAnalyst(FixedAnalyst):
    """A hosted analyst's timing: the reply comes ``LATENCY_S`` after the call."""

    def __init__(self) -> None:
        self.called_at: list[float] = []
        self.replied_at: list[float] = []

    def complete(self, messages, *, temperature, seed):
        self.called_at.append(time.perf_counter())
        time.sleep(LATENCY_S)
        self.replied_at.append(time.perf_counter())
        return super().complete(messages, temperature=temperature, seed=seed)


def _sgcd_update(setup, in_background: bool):
    """One SGCD update on the mixed group; returns the gradient, the pending credit, the
    analyst and when the learner's forward first ran."""
    model, group, teacher = setup
    # scored with its own copy of the weights, as the trainer's teacher (the sampler's)
    teacher = replace(teacher, model=copy.deepcopy(model), analyst=SlowAnalyst())
    entry = get_learner("sgcd")
    learner = entry.learner_class(
        entry.make_config({}), LearnerContext(temperature=1.0, autocast=None, teacher=teacher)
    )
    method = get_credit(learner.credit_method)
    config = method.make_config(learner.credit_config())
    forward_at: list[float] = []
    hook = model.register_forward_pre_hook(lambda *_: forward_at.append(time.perf_counter()))
    model.zero_grad()
    scales = [1.0 / sum(sum(e.response_mask) for e in group.episodes)] * len(group.episodes)
    try:
        credit = PendingCredit(lambda: method.start([group], teacher, config), in_background)
        backward_groups(learner, model, [group], credit, scales)
    finally:
        hook.remove()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return grad, credit, teacher.analyst, forward_at[0]


def test_a_waiting_credit_overlaps_the_forward_and_gives_the_same_gradient(setup):
    first, inline, analyst, forward_at = _sgcd_update(setup, in_background=False)
    assert forward_at > analyst.replied_at[0]  # computed first: the forward waited
    assert inline.waited_s == inline.seconds

    overlapped, pending, analyst, forward_at = _sgcd_update(setup, in_background=True)
    assert forward_at < analyst.replied_at[0]  # the forward ran while the analyst was out
    assert pending.seconds >= LATENCY_S
    assert pending.waited_s < pending.seconds  # part of the wait was hidden
    assert pending.complete().diagnostics["credit/mixed_group_share"] == 1.0
    torch.testing.assert_close(overlapped, first, rtol=1e-6, atol=0.0)


def test_an_error_in_a_background_credit_reaches_the_update(setup):
    model, group, _ = setup
    entry = get_learner("grpo")
    learner = entry.learner_class(
        entry.make_config({}), LearnerContext(temperature=1.0, autocast=None)
    )

    def failing():
        raise ValueError("the analyst's reply could not be read")

    credit = PendingCredit(failing, in_background=True)
    scales = [1.0] * len(group.episodes)
    with pytest.raises(ValueError, match="could not be read"):
        backward_groups(learner, model, [group], credit, scales)


def test_a_credit_that_computes_here_is_computed_at_once():
    calls = []

    def assign():
        calls.append(threading.current_thread())
        return "credit"

    pending = PendingCredit(assign, in_background=False)
    assert calls == [threading.main_thread()]
    assert pending.result() == "credit" and len(calls) == 1


@pytest.fixture
def mixed_training(monkeypatch):
    """Training with rollouts relabelled mixed (the tiny model never succeeds) before the
    trainer sees each group, and a :class:`SlowAnalyst` per run; returns the analysts and
    when each draw's rollouts ended."""
    import learners.training.train as train

    rollouts_ended: list[float] = []
    rollout_groups = train.rollout_groups

    def mixed_rollouts(*args, on_group=None, **kwargs):
        def relabel(j, group):
            for k, episode in enumerate(group.episodes):
                episode.reward = float(k % 2 == 0)
            if on_group:
                on_group(j, group)

        groups = rollout_groups(*args, on_group=relabel, **kwargs)
        rollouts_ended.append(time.perf_counter())
        return groups

    monkeypatch.setattr(train, "rollout_groups", mixed_rollouts)
    analysts: list[SlowAnalyst] = []
    monkeypatch.setattr(
        "agents.chat.make_chat_backend", lambda cfg: analysts.append(SlowAnalyst()) or analysts[-1]
    )
    return analysts, rollouts_ended


def _train_sgcd(run, monkeypatch, hosted: bool, *overrides: str) -> dict:
    from learner_helpers import config

    import learners.training.train as train
    from learners.cli import train_one

    monkeypatch.setattr(train, "waits_on_network", lambda analyst: hosted)
    train_one(config("sgcd", "train.steps=1", *overrides), run)
    (metrics,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return metrics


def test_the_trainer_overlaps_a_hosted_analyst_and_trains_as_it_would_inline(
    tmp_path, monkeypatch, mixed_training
):
    """A hosted analyst: each mixed group's request goes out as its rollouts end and the
    credit runs beside the forward; the weights equal those of the credit computed inline
    (a local analyst's schedule) and each group's reference is asked for once."""
    from safetensors.torch import load_file

    analysts, rollouts_ended = mixed_training
    runs = {}
    for hosted in (True, False):
        run = tmp_path / str(hosted)
        metrics = _train_sgcd(run, monkeypatch, hosted, "train.groups_per_step=2")
        assert metrics["credit/mixed_group_share"] == 1.0 and metrics["train/grad_norm"] > 0
        assert len(analysts[-1].called_at) == 2  # one request per mixed group
        hidden = metrics["time/credit_s"] - metrics["time/credit_wait_s"]
        if hosted:
            assert max(analysts[-1].called_at) < rollouts_ended[-1]
            assert metrics["credit/analyst_early_unused"] == 0 and hidden > 0
        else:
            assert min(analysts[-1].called_at) > rollouts_ended[-1]
            assert metrics["credit/analyst_s"] >= LATENCY_S and hidden == 0
        # the step's time: rollouts, the update's own time, and the credit's unhidden part
        parts = metrics["time/rollout_s"] + metrics["time/update_s"] + metrics["time/credit_wait_s"]
        assert metrics["time/step_s"] == pytest.approx(parts, abs=0.25)
        runs[hosted] = load_file(run / "checkpoint" / "model.safetensors")
    for name, weight in runs[True].items():
        torch.testing.assert_close(weight, runs[False][name], rtol=1e-6, atol=0.0)


def test_no_early_request_for_a_group_dynamic_sampling_may_drop(
    tmp_path, monkeypatch, mixed_training
):
    """Two mixed groups drawn for one wanted: only the first is sure to be kept, so only
    its request goes out early; the second is dropped and never sent."""
    analysts, rollouts_ended = mixed_training
    metrics = _train_sgcd(
        tmp_path,
        monkeypatch,
        True,
        "train.groups_per_draw=2",
        "train.dynamic_sampling=true",
    )
    assert metrics["rollout/groups_drawn"] == 2 and metrics["rollout/kept_groups"] == 1
    (called_at,) = analysts[-1].called_at
    assert called_at < rollouts_ended[-1] and metrics["credit/analyst_early_unused"] == 0
