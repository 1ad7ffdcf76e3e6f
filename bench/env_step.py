"""Env latencies on tau3-airline: reset, one tool-call step, and scoring (episode end).

    python bench/env_step.py [--repeats N]

Prints medians (and min/max) in milliseconds. Scoring is the env's (envs.tau2_scoring;
bench/scoring.py compares it with tau2's evaluator).
"""

import argparse
import statistics
import time

from envs.core import AgentAction, ToolCall
from envs.tau3_airline.env import Tau3AirlineEnv


def timed(fn, repeats):
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    env = Tau3AirlineEnv(split="test", max_steps=10**9)
    read = AgentAction(
        tool_calls=(ToolCall("get_reservation_details", {"reservation_id": "4WQ150"}),)
    )
    env.reset(options={"task_id": "8"})
    rows = {
        "reset": timed(lambda: env.reset(options={"task_id": "8"}), max(args.repeats // 10, 5)),
        "tool-call step": timed(lambda: env.step(read), args.repeats),
    }

    def score():
        env.reset(options={"task_id": "8"})
        env.step(AgentAction(content="Sorry."))

    rows["score (reset + stop + evaluate)"] = timed(score, max(args.repeats // 20, 5))
    for name, s in rows.items():
        print(
            f"{name:<34} median {statistics.median(s):8.3f} ms  "
            f"min {min(s):8.3f}  max {max(s):8.3f}  (n={len(s)})"
        )


if __name__ == "__main__":
    main()
