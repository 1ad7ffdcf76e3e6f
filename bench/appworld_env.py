"""AppWorld gold episodes/s through the rollouts' env pool with one vs two servers, and
per-operation latencies, on the synthetic world through the real AppWorld server.

    python bench/appworld_env.py [--quick] [--repeats N]

:func:`measure` (also run by the bench harness) drives :class:`LocalEnvPool` with 1 slot
(one server) and 2 slots (two servers, stepped concurrently) over the same task list,
alternating the arms; both servers start and serve every task once before any clock runs.

``main`` then prints medians (and min/max) in milliseconds of, through one env:

* server start -- the first reset on a fresh server: launch, import every app, open the world;
* reset -- ``/initialize`` of a task on a warm server;
* execute -- one step whose cell makes one API call (``/execute`` + ``/task_completed``);
* evaluate -- a stop step, i.e. AppWorld's evaluator on the episode (``/evaluate``);
* gold episode -- reset, the gold solution cell, evaluation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from agents.env_pool import EnvSpec, LocalEnvPool
from envs.appworld.env import AppWorldEnv
from envs.appworld.world import synthetic_world
from envs.core import AgentAction
from envs.users import STOP

TASK = "5a2ce0b_1"
ONE_API_CALL = AgentAction(content="print(apis.supervisor.show_profile()['first_name'])")
# Servers are never recycled mid-run: these are timings of warm servers of a known age.
OPTIONS: dict[str, Any] = dict(
    split="test_normal", max_steps=10**6, episodes_per_server=10**6, max_servers=2
)


def gold_episodes(pool: LocalEnvPool, tasks: list[str], gold: dict[str, list[AgentAction]]) -> None:
    """Play each task's gold solution, ``pool.size`` episodes at a time in lockstep, as the
    rollouts drive the pool."""
    for i in range(0, len(tasks), pool.size):
        batch = dict(enumerate(tasks[i : i + pool.size]))
        pool.reset({s: (t, 0) for s, t in batch.items()})
        cells = {s: iter(gold[t]) for s, t in batch.items()}
        while cells:
            for s, (_, reward, terminated, truncated, _) in pool.step(
                {s: next(c) for s, c in cells.items()}
            ).items():
                if terminated or truncated:
                    assert reward == 1.0, f"gold episode of {batch[s]} scored {reward}"
                    del cells[s]


def measure(quick: bool) -> tuple[list[str], float]:
    """Gold episodes/s with one and with two servers; returns (table lines, 2-server rate /
    1-server rate). Both arms play the same tasks; the order of the arms alternates by round."""
    # Short rounds, often alternated: a load change on the machine hits both arms alike.
    rounds, per_round = (4, 6) if quick else (12, 12)
    spec = EnvSpec({"name": "appworld", "data_root": str(synthetic_world()), **OPTIONS})
    arms = {"1 server": LocalEnvPool(spec, 1), "2 servers": LocalEnvPool(spec, 2)}
    env = arms["1 server"].workers[0].env
    task_ids = [t.task_id for t in env.tasks()]
    gold = {t: env.gold_actions(t) for t in task_ids}
    # Two siblings of each task in turn, as a GRPO group fills adjacent slots.
    tasks = [task_ids[k // 2 % len(task_ids)] for k in range(per_round)]
    try:
        # Warm-up: both servers start together, then each opens every task's world once.
        gold_episodes(arms["2 servers"], [t for t in task_ids for _ in range(2)], gold)
        seconds = dict.fromkeys(arms, 0.0)
        for r in range(rounds):
            for name in list(arms)[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                gold_episodes(arms[name], tasks, gold)
                seconds[name] += time.perf_counter() - start
    finally:
        for pool in arms.values():
            pool.close()
        env.pool.shutdown()
    rates = {name: rounds * per_round / s for name, s in seconds.items()}
    ratio = rates["2 servers"] / rates["1 server"]
    lines = [
        f"AppWorld gold episodes/s through LocalEnvPool ({rounds} rounds x {per_round} "
        "episodes per arm)",
        *(f"  {name:<10} {rate:6.2f} episodes/s" for name, rate in rates.items()),
        f"  2 servers / 1 server: {ratio:.2f}x",
    ]
    return lines, ratio


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def latencies(repeats: int) -> list[str]:
    env = AppWorldEnv(**OPTIONS, data_root=str(synthetic_world()))
    (gold,) = env.gold_actions(TASK)

    def reset() -> None:
        env.reset(options={"task_id": TASK})

    def evaluate() -> float:
        reset()
        start = time.perf_counter()
        env.step(AgentAction(content=STOP))
        return (time.perf_counter() - start) * 1000

    def gold_episode() -> None:
        reset()
        assert env.step(gold)[1] == 1.0

    try:
        rows = {"server start (first reset)": timed(reset, 1), "reset": timed(reset, repeats)}
        rows["execute (one API call)"] = timed(lambda: env.step(ONE_API_CALL), repeats)
        rows["evaluate"] = [evaluate() for _ in range(repeats)]
        rows["gold episode (reset+solve+evaluate)"] = timed(gold_episode, repeats)
    finally:
        env.close()
        env.pool.shutdown()
    return [
        f"{name:<38} median {statistics.median(s):9.1f} ms  "
        f"min {min(s):9.1f}  max {max(s):9.1f}  (n={len(s)})"
        for name, s in rows.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer episodes (< 40 s)")
    parser.add_argument("--repeats", type=int, default=30, help="samples per latency row")
    args = parser.parse_args()
    lines, _ = measure(args.quick)
    print("\n".join(lines))
    print("\n".join(latencies(5 if args.quick else args.repeats)))


if __name__ == "__main__":
    main()
