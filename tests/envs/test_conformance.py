"""Every registered benchmark passes the conformance suite (envs/conformance.py)."""

import re

import gymnasium
import pytest

from credit.sanitizer import PrivateValues, Sanitizer, SanitizerConfig
from envs import ENV_IDS, conformance
from envs.appworld.world import synthetic_world
from envs.core import TaskLabels

# Per benchmark: a factory of fresh envs, a task whose gold actions write state, and the
# tasks whose gold replay must score 1.0.
BENCHMARKS = {
    "tau3_airline": dict(
        make_env=lambda: gymnasium.make(ENV_IDS["tau3_airline"], split="test").unwrapped,
        writing_task="8",
    ),
    # the small domain: the whole generated test split (60 tasks) is replayed
    "airline_mini": dict(
        make_env=lambda: gymnasium.make(ENV_IDS["airline_mini"], split="test").unwrapped,
        writing_task="242",
    ),
    # the synthetic world (envs/appworld/synthetic.py) in the real AppWorld engine
    "appworld": dict(
        make_env=lambda: (
            gymnasium.make(
                ENV_IDS["appworld"], data_root=str(synthetic_world()), split="test_normal"
            ).unwrapped
        ),
        writing_task="5a2ce0b_1",
    ),
    # tau2-retail's test split (40 tasks, ~20 s of replay); train is replayed in
    # tests/envs/test_tau2_retail.py (slow)
    "tau2_retail": dict(
        make_env=lambda: gymnasium.make(ENV_IDS["tau2_retail"], split="test").unwrapped,
        writing_task="5",
    ),
}


@pytest.fixture(params=sorted(BENCHMARKS), scope="module")
def bench(request):
    return BENCHMARKS[request.param]


CHECKS = [
    conformance.check_spaces_and_info,
    conformance.check_seeded_reset,
    conformance.check_step_determinism,
    conformance.check_final_info,
    conformance.check_bad_input,
    conformance.check_double_close,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_check(bench, check):
    check(bench["make_env"])


def test_reset_isolation(bench):
    conformance.check_reset_isolation(bench["make_env"], bench["writing_task"])


def test_gold_replay_whole_split(bench):
    env = bench["make_env"]()
    rewards = conformance.check_gold_replay(bench["make_env"], [t.task_id for t in env.tasks()])
    assert len(rewards) == len(env.tasks())


def test_task_labels_declare_the_ground_truth_and_the_sanitizer_masks_it(bench):
    env = bench["make_env"]()
    task_ids = [t.task_id for t in env.tasks()]
    conformance.check_task_labels(bench["make_env"], task_ids)
    config = SanitizerConfig()
    for task_id in task_ids:
        labels = env.task_labels(task_id)
        private = PrivateValues.from_labels(
            [c.arguments for c in labels.gold_calls], labels.answers
        )
        sanitize = Sanitizer(config, private)
        # what a sibling that found the answer and made the gold calls would show the analyst
        trace = "\n".join(
            [f"{c.name}({c.arguments})" for c in labels.gold_calls]
            + [f"The answer is {a}." for a in labels.answers]
        )
        literals = private.gold_literals + private.answer_literals
        shown = sanitize(trace)
        leaked = [
            v
            for v in literals
            if len(v) >= config.min_literal_chars
            and re.search(rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])", shown)
        ]
        assert not leaked, f"{task_id}: {leaked[:3]}"


def test_a_benchmark_that_declares_no_ground_truth_fails_conformance():
    class Undeclared(type(BENCHMARKS["airline_mini"]["make_env"]())):
        def task_labels(self, task_id):
            return TaskLabels(gold_calls=(), answers=())

    def make_env():
        return Undeclared(split="test")

    writing = BENCHMARKS["airline_mini"]["writing_task"]
    with pytest.raises(AssertionError, match="leaves out gold calls"):
        conformance.check_task_labels(make_env, [writing])


def test_gymnasium_make_runs_the_passive_checker(bench):
    """Through gymnasium.make's own wrappers (order enforcing, passive env checker)."""
    env = gymnasium.make(ENV_IDS["tau3_airline"])
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated and info["termination_reason"] == "user_stop"
    env.close()
