"""Episode scoring on tau3-airline: the project's scorer (envs.tau2_scoring) against tau2's
``evaluate_simulation``, on the same episodes in one run.

    python bench/scoring.py [--quick]

Each episode (the gold and the do-nothing trajectory of a task) is played once, then scored
by both arms in alternating order; their RewardInfos must be equal. The project arm's
once-per-process work (a task's gold hashes: reported on their own line; a fresh world's
hashes) is done before the timed calls, by the env's own scoring at the episode's end.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from envs.core import AgentAction
from envs.tau2_scoring import gold_hashes, score_episode, tau2_evaluate
from envs.tau3_airline.env import Tau3AirlineEnv

if TYPE_CHECKING:
    from tau2.data_model.message import Message
    from tau2.data_model.simulation import TerminationReason
    from tau2.environment.environment import Environment

QUICK_TASKS = 6  # 12 episodes: measure(quick=True) takes ~18 s of CPU, mostly in tau2's arm
DO_NOTHING = [AgentAction(content="Sorry.")]


def _play(
    env: Tau3AirlineEnv, task_id: str, script: list[AgentAction]
) -> tuple[Environment, list[Message], TerminationReason]:
    """The episode's world, trajectory and termination reason, as ``TauEnv`` scores them."""
    from tau2.data_model.simulation import TerminationReason

    env.reset(seed=0, options={"task_id": task_id})
    for action in script:
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return env._world, env._trajectory, TerminationReason(info["termination_reason"])


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _alternate(
    ours: Callable[[], Any], ref: Callable[[], Any], flip: bool
) -> tuple[tuple[Any, float], tuple[Any, float]]:
    """Both arms' (result, seconds); ``ref`` first when ``flip``, so that neither arm always
    runs on the caches the other one warmed."""
    if flip:
        ref_timed = _timed(ref)
        return _timed(ours), ref_timed
    ours_timed = _timed(ours)
    return ours_timed, _timed(ref)


def _gold_hash_seconds(env: Tau3AirlineEnv, task_id: str) -> float:
    """One task's gold hashes from a cold cache (the project arm's once-per-task cost)."""
    cached = env.domain.gold_hashes.pop(task_id, None)
    _, seconds = _timed(lambda: gold_hashes(env.domain, task_id))
    if cached is not None and env.domain.gold_hashes[task_id] != cached:
        raise RuntimeError(f"task {task_id}: gold hashes changed between two computations")
    return seconds


def _score_both(
    env: Tau3AirlineEnv, task_id: str, script: list[AgentAction], flip: bool, warm_up: bool
) -> list[tuple[Any, float]]:
    """Play one episode; [(RewardInfo, seconds)] of the project's scorer and of tau2's."""
    world, messages, termination = _play(env, task_id, script)
    project = partial(score_episode, env.domain, task_id, world, messages, termination)
    tau2 = partial(tau2_evaluate, env.domain, env.domain.tasks[task_id], messages, termination)
    if warm_up:
        tau2()  # tau2's first call pays for lazy imports
    ours, ref = _alternate(project, tau2, flip)
    if ours[0].model_dump() != ref[0].model_dump():
        raise RuntimeError(f"task {task_id}: the project's reward differs from tau2's")
    return [ours, ref]


def measure(quick: bool) -> tuple[list[str], float]:
    """Score the gold and do-nothing episodes of tau3-airline's tasks (both splits;
    :data:`QUICK_TASKS` of them when ``quick``) with both arms. Returns the report lines and
    tau2's time over the project's. Raises if any two rewards differ."""
    env = Tau3AirlineEnv(max_steps=10**6)
    task_ids = sorted(env.domain.tasks, key=lambda t: (env.domain.category(t), int(t)))
    if quick:  # evenly spaced, so that each kind of task keeps about its share
        task_ids = task_ids[:: len(task_ids) // QUICK_TASKS][:QUICK_TASKS]
    gold = sum(_gold_hash_seconds(env, t) for t in task_ids) / len(task_ids)
    episodes = [(t, s) for t in task_ids for s in (env.gold_actions(t), DO_NOTHING)]
    # episodes alternate gold and do-nothing: flip so that each kind leads in both arms
    results = [
        _score_both(env, task_id, script, flip=k % 4 in (1, 2), warm_up=k == 0)
        for k, (task_id, script) in enumerate(episodes)
    ]
    project, tau2 = (sum(r[arm][1] for r in results) for arm in (0, 1))
    passed = sum(r[1][0].reward == 1.0 for r in results)
    n = len(episodes)
    return [
        f"scoring: project {project / n:.3f} s/episode, tau2 evaluate_simulation "
        f"{tau2 / n:.2f} s/episode, {tau2 / project:.1f}x, identical rewards on {n} episodes "
        f"({passed} score 1)",
        f"scoring: project gold hashes {gold:.2f} s per task, once per process",
    ], tau2 / project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TASKS} tasks only")
    lines, _ = measure(parser.parse_args().quick)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
