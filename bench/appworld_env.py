"""AppWorld env latencies on the synthetic world: reset, one execute step, evaluate.

    python bench/appworld_env.py [--repeats N]

Prints medians (and min/max) in milliseconds, through the env and the real AppWorld server:

* server start -- the first reset of a process: launch, import every app, open the world;
* reset -- ``/initialize`` of a task on a warm server;
* execute -- one step whose cell makes one API call (``/execute`` + ``/task_completed``);
* evaluate -- a stop step, i.e. AppWorld's evaluator on the episode (``/evaluate``);
* gold episode -- reset, the gold solution cell, evaluation;

and the throughput of gold episodes with 1 and with 2 envs stepping in parallel threads
(one server each: AppWorld serves one request at a time per process).
"""

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from envs.appworld.env import AppWorldEnv
from envs.appworld.world import synthetic_world
from envs.core import AgentAction
from envs.users import STOP

TASK = "5a2ce0b_1"
ONE_API_CALL = AgentAction(content="print(apis.supervisor.show_profile()['first_name'])")
# Servers are never recycled mid-run: these are timings of warm servers of a known age.
OPTIONS = dict(split="test_normal", max_steps=10**6, episodes_per_server=10**6, max_servers=2)


def gold_episode(env: AppWorldEnv) -> None:
    env.reset(options={"task_id": TASK})
    (cell,) = env.gold_actions(TASK)
    assert env.step(cell)[1] == 1.0


def timed(fn, repeats):
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    options = {**OPTIONS, "data_root": str(synthetic_world())}
    env = AppWorldEnv(**options)
    rows = {"server start (first reset)": timed(lambda: env.reset(options={"task_id": TASK}), 1)}
    rows["reset"] = timed(lambda: env.reset(options={"task_id": TASK}), args.repeats)
    rows["execute (one API call)"] = timed(lambda: env.step(ONE_API_CALL), args.repeats)

    def evaluate():
        env.reset(options={"task_id": TASK})
        start = time.perf_counter()
        env.step(AgentAction(content=STOP))
        return (time.perf_counter() - start) * 1000

    rows["evaluate"] = [evaluate() for _ in range(args.repeats)]
    rows["gold episode (reset+solve+evaluate)"] = timed(lambda: gold_episode(env), args.repeats)
    for name, s in rows.items():
        print(
            f"{name:<38} median {statistics.median(s):9.1f} ms  "
            f"min {min(s):9.1f}  max {max(s):9.1f}  (n={len(s)})"
        )
    second = AppWorldEnv(**options)
    gold_episode(second)  # starts its server before the clock does
    for envs in ([env], [env, second]):
        start = time.perf_counter()
        with ThreadPoolExecutor(len(envs)) as workers:
            list(workers.map(lambda e: [gold_episode(e) for _ in range(args.repeats)], envs))
        rate = len(envs) * args.repeats / (time.perf_counter() - start)
        print(f"gold episodes per second, {len(envs)} env(s) in parallel: {rate:.1f}")
    env.pool.shutdown()


if __name__ == "__main__":
    main()
