"""Sibling rollouts: KV-cached vs re-encoding generation, batched vs one at a time.

    python bench/rollouts.py [--quick] [--env tau3_airline] [--n 8] [--max-new-tokens 48]

Three arms play the same n siblings of the same task (same env seeds, sampling settings
and token budget) with SmolLM2 in the dtype ``auto`` picks, alternating arm by arm after
one untimed warm-up episode each:

* cached -- one batch per env step, each episode's keys/values kept across turns and the
  shared prompt encoded once (the default);
* re-encode -- one batch per env step, every context encoded whole each turn (what
  ``model.generate`` did before);
* one at a time -- the siblings played one after another, cached;
* cached <other dtype> -- the cached arm with the sampler in the dtype ``auto`` did not
  pick (is ``auto`` right for decoding too?).

Sampling is seeded per episode, so every arm plays distinct siblings; episodes/s is the
headline, generated tokens/s is printed beside it because episode lengths differ.
"""

from __future__ import annotations

import argparse
import statistics
import time

from agents.build import build_policy
from agents.env_pool import EnvSpec, LocalEnvPool
from agents.generation import SamplingConfig
from agents.precision import resolve_dtype
from agents.rollout import Policy, RolloutConfig, rollout_episodes


def _play(pool, policy: Policy, jobs, config, seeds: list[int]) -> tuple[float, int, int]:
    """Seconds, generated tokens, episodes: ``jobs`` in one batch when one seed is given,
    else one job per seed, one after another."""
    start = time.perf_counter()
    batches = [jobs] if len(seeds) == 1 else [[job] for job in jobs]
    episodes = [
        e
        for b, s in zip(batches, seeds, strict=True)
        for e in rollout_episodes(pool, policy, b, config, s)
    ]
    seconds = time.perf_counter() - start
    return seconds, sum(sum(e.response_mask) for e in episodes), len(episodes)


def measure(
    quick: bool, env: str | None = None, n: int = 8, max_new_tokens: int | None = None
) -> tuple[list[str], dict[str, float]]:
    env = env or ("airline_mini" if quick else "tau3_airline")
    max_new_tokens = max_new_tokens or (16 if quick else 32)
    repeats = 1 if quick else 2
    max_steps = 2 if quick else 4  # assistant messages per episode: bounds each arm's time
    rollout_cfg = {"backend": "hf", "chat_format": {"tool_schema_style": "signature"}}
    auto = resolve_dtype("auto").name
    other = "float32" if auto != "float32" else "bfloat16"
    arms = {}
    for name, kv_cache, dtype in (
        ("cached", True, auto),
        ("re-encode", False, auto),
        (f"cached {other}", True, other),
    ):
        model_cfg = {"name": "smollm2", "dtype": dtype}
        arms[name], _ = build_policy(model_cfg, {**rollout_cfg, "kv_cache": kv_cache})
    arms["one at a time"] = arms["cached"]
    spec = EnvSpec({"name": env, "split": "train", "max_steps": max_steps})
    task = spec.build().tasks()[0].task_id
    pool = LocalEnvPool(spec, n)
    config = RolloutConfig(
        n=n,
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=max_new_tokens),
        max_context_tokens=None,
    )
    for policy in arms.values():  # warm-up, untimed: one episode per arm
        _play(pool, policy, [(task, 999)], config, [999])
    runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in arms}
    for r in range(repeats):
        jobs = [(task, 1000 * r + k) for k in range(n)]
        for name, policy in arms.items():
            seeds = [r] if name != "one at a time" else [100 * r + k for k in range(n)]
            runs[name].append(_play(pool, policy, jobs, config, seeds))
    pool.close()
    rates = {
        name: (
            statistics.median(e / s for s, _, e in rs),
            statistics.median(t / s for s, t, _ in rs),
        )
        for name, rs in runs.items()
    }
    lines = [
        f"rollouts ({env}, SmolLM2 in {auto} unless named, {n} siblings, "
        f"<= {max_steps} turns of <= {max_new_tokens} tokens, median of {repeats}):"
    ]
    lines += [
        f"  {name:<14} {eps:6.3f} episodes/s {tps:7.1f} tokens/s"
        for name, (eps, tps) in rates.items()
    ]
    ratios = {
        "kv_cache_vs_reencode": rates["cached"][0] / rates["re-encode"][0],
        "batched_vs_single": rates["cached"][0] / rates["one at a time"][0],
        "sampler_auto_vs_other_dtype": rates["cached"][0] / rates[f"cached {other}"][0],
    }
    return lines, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--env", default=None)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    args = parser.parse_args()
    lines, ratios = measure(args.quick, args.env, args.n, args.max_new_tokens)
    print("\n".join(lines))
    print(" ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
