"""Every registered benchmark passes the conformance suite (envs/conformance.py)."""

import gymnasium
import pytest

from envs import ENV_IDS, conformance
from envs.appworld.world import synthetic_world

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


def test_gymnasium_make_runs_the_passive_checker(bench):
    """Through gymnasium.make's own wrappers (order enforcing, passive env checker)."""
    env = gymnasium.make(ENV_IDS["tau3_airline"])
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated and info["termination_reason"] == "user_stop"
    env.close()
