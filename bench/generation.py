"""Batched vs one-at-a-time generation in rollouts, same model, same episodes, one run.

    python bench/generation.py [--model smollm2] [--env airline_mini] [--n 8] [--repeats 2]

Prints episodes/s and generated tokens/s for n siblings played in lockstep (one batched
``generate`` per env step) and the same n episodes played one after another, and their
ratio. The seeds are the same, so both play statistically identical episodes.
"""

import argparse
import statistics
import time

import torch

from agents.build import build_policy
from agents.env_pool import EnvSpec, LocalEnvPool
from agents.generation import SamplingConfig
from agents.rollout import RolloutConfig, rollout_episodes


def timed(pool, policy, jobs, config, seed):
    start = time.perf_counter()
    episodes = rollout_episodes(pool, policy, jobs, config, seed)
    seconds = time.perf_counter() - start
    return seconds, sum(sum(e.response_mask) for e in episodes), len(episodes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--env", default="airline_mini")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    rollout_cfg = {"backend": "hf", "chat_format": {"tool_schema_style": "signature"}}
    policy, _ = build_policy({"name": args.model}, rollout_cfg)
    spec = EnvSpec({"name": args.env, "split": "train"})
    task = spec.build().tasks()[0].task_id
    pool = LocalEnvPool(spec, args.n)
    config = RolloutConfig(
        n=args.n, sampling=SamplingConfig(temperature=1.0, max_new_tokens=args.max_new_tokens)
    )
    rows = {"batched": [], "one at a time": []}
    for r in range(args.repeats):
        jobs = [(task, 100 * r + k) for k in range(args.n)]
        rows["batched"].append(timed(pool, policy, jobs, config, seed=r))
        seq = [timed(pool, policy, [job], config, seed=r) for job in jobs]
        rows["one at a time"].append(tuple(map(sum, zip(*seq, strict=True))))
    rates = {}
    for name, runs in rows.items():
        eps = statistics.median(n / s for s, _, n in runs)
        tps = statistics.median(t / s for s, t, _ in runs)
        rates[name] = (eps, tps)
        print(
            f"{name:<14} {eps:6.3f} episodes/s  {tps:7.1f} generated tokens/s"
            f"  (median of {len(runs)})"
        )
    (b_eps, b_tps), (s_eps, s_tps) = rates["batched"], rates["one at a time"]
    print(
        f"batched / one at a time: {b_eps / s_eps:.2f}x episodes/s, {b_tps / s_tps:.2f}x tokens/s "
        f"({args.model}, {args.env}, n={args.n}, threads={torch.get_num_threads()})"
    )


if __name__ == "__main__":
    main()
