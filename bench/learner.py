"""The learner step: shared-prefix vs per-episode forward+backward, SGCD vs GRPO.

    python bench/learner.py [--quick] [--env tau3_airline] [--n 8]

One group of n SmolLM2 siblings sampled on the env (cached rollouts; rewards set
alternately to 1 and 0 so that the group is mixed and SGCD's credit has work to do), the
learner's fp32 weights under the autocast ``auto`` picks. Arms alternate after one untimed
warm-up SGCD step:

* per-episode -- each sibling's prompt + continuation encoded whole, forward+backward one
  sibling at a time (the update before the shared-prefix forward);
* shared-prefix -- ``learners.training.train.backward_groups``: the prompt once, the continuations
  in one micro-batch; the gradient must equal the per-episode one;
* GRPO step / SGCD step -- credit assignment plus the update, SGCD with the local
  analyst (SmolLM2 writing the credit reference) and teacher scoring;
* SGCD step, hosted -- the same with a stand-in for a hosted analyst (no network here):
  it answers each request after ``--hosted-latency`` seconds with the reply the local
  analyst wrote for it, so teacher scoring sees the same reference. As in training, the
  wait runs beside the update's forward (``learners.training.pending_credit``).

Also prints the shared-prefix pass's throughput as a share of the probe's matmul peak,
counting 6 x parameters x tokens actually needed (the prompt once), and the local
analyst's decode floor on this machine: each token it writes reads all its linear
weights once (one row: memory-bound), timed here, so ``sgcd_vs_grpo_floor`` = (GRPO step
+ max_tokens x that time) / GRPO step is the least SGCD/GRPO this analyst allows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from agents.build import build_policy
from agents.chat import make_chat_backend, waits_on_network
from agents.env_pool import EnvSpec, LocalEnvPool
from agents.generation import SamplingConfig
from agents.model import ModelConfig, load_model
from agents.precision import resolve_dtype
from agents.rollout import RolloutConfig, rollout_groups
from credit import get_credit
from credit.task_prompts import ChatTaskPrompts
from credit.teacher import Teacher
from learners.registry import LearnerContext, LossInput, get_learner
from learners.training.pending_credit import PendingCredit
from learners.training.train import TEACHER_TITLE, backward_groups


def _group(env: str, n: int, max_new_tokens: int, max_steps: int):
    policy, _ = build_policy(
        {"name": "smollm2"},
        {"backend": "hf", "kv_cache": True, "chat_format": {"tool_schema_style": "signature"}},
    )
    spec = EnvSpec({"name": env, "split": "train", "max_steps": max_steps})
    train_env = spec.build()
    task = train_env.tasks()[0].task_id
    config = RolloutConfig(
        n=n, sampling=SamplingConfig(temperature=1.0, max_new_tokens=max_new_tokens)
    )
    (group,) = rollout_groups(LocalEnvPool(spec, n), policy, [task], 0, config)
    for k, e in enumerate(group.episodes):
        e.reward = float(k % 2 == 0)
    prompts = ChatTaskPrompts(policy.chat, train_env.task_labels, TEACHER_TITLE)
    return group, policy.generator, prompts


def _per_episode(learner, model, group, advantages, scales) -> None:
    p = len(group.prompt_ids)
    device = next(model.parameters()).device
    for j, e in enumerate(group.episodes):
        ids = torch.tensor([group.prompt_ids + e.ids], device=device)
        with torch.autocast(
            device.type,
            dtype=learner.context.autocast,
            enabled=learner.context.autocast is not None,
        ):
            logits = model(input_ids=ids).logits[0, p - 1 : -1][e.response_positions()].float()
        x = LossInput(model, group, j, advantages.advantages[j], scales[j], logits)
        loss, _ = learner.loss(x)
        loss.backward()


class HostedStandIn:
    """The timing of a hosted analyst answering in ``latency`` seconds: replays the
    replies another backend gave to the same messages (calls run in threads, as a hosted
    backend's do in :func:`agents.chat.complete_many`)."""

    supports_temperature = True

    def __init__(self, source, latency: float) -> None:
        self.model = f"stand-in for a hosted analyst ({latency:g} s)"
        self.source = source
        self.latency = latency
        self.replies: dict[str, str] = {}

    def complete(self, messages, *, temperature, seed) -> str:
        key = repr(messages)
        if key not in self.replies:  # in the untimed warm-up
            self.replies[key] = self.source.complete(messages, temperature=temperature, seed=seed)
        time.sleep(self.latency)
        return self.replies[key]


def _weight_read(model: torch.nn.Module) -> tuple[float, int]:
    """Seconds to read every linear weight of ``model`` once, one row through each as a
    decode step does (median of 5), and how many bytes they hold."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    rows = {m: torch.randn(1, m.in_features, dtype=m.weight.dtype) for m in linears}
    times = []
    with torch.no_grad():
        for _ in range(6):  # the first one warms up
            start = time.perf_counter()
            for m in linears:
                F.linear(rows[m], m.weight)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), sum(m.weight.nbytes for m in linears)


def _flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def measure(
    quick: bool,
    env: str | None = None,
    n: int | None = None,
    hosted_latency: float = 5.0,  # issue 15's goal: a hosted analyst answering within 5 s
) -> tuple[list[str], dict[str, float]]:
    """Quick mode leaves out the hosted arm."""
    env = env or ("airline_mini" if quick else "tau3_airline")
    n = n or (4 if quick else 8)
    repeats = 1 if quick else 2
    group, generator, prompts = _group(env, n, 32 if quick else 64, 2 if quick else 4)
    model, _ = load_model(ModelConfig(name="smollm2", dtype="float32"))
    model.train()
    precision = resolve_dtype("auto")
    analyst_tokens = 32 if quick else 256
    analyst = make_chat_backend({"kind": "local", "model": "smollm2", "max_tokens": analyst_tokens})
    teacher = Teacher(
        model=generator.model, prompts=prompts, analyst=analyst, prompt_cache=generator
    )
    context = LearnerContext(temperature=1.0, autocast=precision.autocast, teacher=teacher)
    learners = {}
    for name in ("grpo", "sgcd"):
        entry = get_learner(name)
        learners[name] = entry.learner_class(entry.make_config({}), context)
    tokens = sum(sum(e.response_mask) for e in group.episodes)
    scales = [1.0 / tokens] * n
    grpo = learners["grpo"]
    credit = get_credit("grpo")
    advantages = credit.assign([group], None, credit.make_config())

    diagnostics: dict[str, dict[str, float]] = {}

    def update(arm: str, name: str, step_analyst) -> None:
        """Credit and update as the trainer runs them (a hosted analyst's wait beside the
        forward)."""
        learner = learners[name]
        method = get_credit(learner.credit_method)
        step_teacher = replace(teacher, analyst=step_analyst)
        config = method.make_config(learner.credit_config())
        credit = PendingCredit(
            lambda: method.start([group], step_teacher, config),
            in_background=waits_on_network(step_analyst),
        )
        backward_groups(learner, model, [group], credit, scales)
        diagnostics[arm] = {**credit.complete().diagnostics, "credit/wait_s": credit.waited_s}

    arms = {
        "per-episode": lambda: _per_episode(grpo, model, group, advantages, scales),
        "shared-prefix": lambda: backward_groups(grpo, model, [group], advantages, scales),
        "GRPO step": lambda: update("GRPO step", "grpo", analyst),
        "SGCD step": lambda: update("SGCD step", "sgcd", analyst),
    }
    sgcd_arms = ["SGCD step"]
    if not quick:
        hosted = HostedStandIn(analyst, hosted_latency)
        arms["SGCD, hosted"] = lambda: update("SGCD, hosted", "sgcd", hosted)
        sgcd_arms.append("SGCD, hosted")
    times: dict[str, list[float]] = {name: [] for name in arms}
    grads: dict[str, torch.Tensor] = {}
    for name in sgcd_arms:  # warm-up, untimed: forward, backward, analyst, teacher scoring
        arms[name]()
    for _ in range(repeats):
        for name, run in arms.items():
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            grads[name] = _flat_grad(model)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    reference = grads["per-episode"]
    gap = float((grads["shared-prefix"] - reference).norm() / reference.norm())
    needed = len(group.prompt_ids) + sum(len(e.ids) for e in group.episodes)
    params = sum(p.numel() for p in model.parameters())
    achieved = 6 * params * needed / med["shared-prefix"] / 1e9
    peak = precision.gflops[precision.name]  # the CPU probe's figure (a CPU benchmark)
    lengths = [len(e.ids) for e in group.episodes]
    lines = [
        f"learner step ({env}, SmolLM2 fp32 weights, autocast {precision.name}, {n} siblings, "
        f"prompt {len(group.prompt_ids)} tokens, continuations {min(lengths)}-{max(lengths)}, "
        f"median of {repeats}):"
    ]
    lines += [f"  {name:<14} {s:7.2f} s" for name, s in med.items()]
    for name in sgcd_arms:
        credit_times = diagnostics[name]
        lines.append(
            f"  {name}, credit in its last run: analyst {credit_times['credit/analyst_s']:.2f} s, "
            f"teacher scoring {credit_times['credit/teacher_scoring_s']:.2f} s, "
            f"update waited {credit_times['credit/wait_s']:.2f} s for it"
        )
    lines.append(
        f"  shared-prefix gradient vs per-episode: relative difference {gap:.1e}; "
        f"{achieved:.0f} GFLOP/s = {achieved / peak:.0%} of the {precision.name} matmul peak"
    )
    read_s, weight_bytes = _weight_read(analyst.weights)
    lines.append(
        f"  local analyst's decode floor: {analyst_tokens} tokens x {read_s * 1e3:.1f} ms to "
        f"read its {weight_bytes / 1e6:.0f} MB of linear weights ({weight_bytes / read_s / 1e9:.1f}"
        f" GB/s) = {analyst_tokens * read_s:.2f} s"
    )
    ratios = {
        "learner_prefix_vs_episode": med["per-episode"] / med["shared-prefix"],
        "sgcd_vs_grpo": med["SGCD step"] / med["GRPO step"],
        "sgcd_vs_grpo_floor": 1 + analyst_tokens * read_s / med["GRPO step"],
    }
    if "SGCD, hosted" in med:
        ratios["sgcd_hosted_vs_grpo"] = med["SGCD, hosted"] / med["GRPO step"]
    return lines, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--env", default=None)
    parser.add_argument("--n", type=int, default=None, help="siblings (default 8; quick 4)")
    parser.add_argument(
        "--hosted-latency", type=float, default=5.0, help="seconds the hosted stand-in takes"
    )
    args = parser.parse_args()
    lines, ratios = measure(args.quick, args.env, args.n, args.hosted_latency)
    print("\n".join(lines))
    print(" ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
