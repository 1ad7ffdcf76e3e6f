"""The learner's forward in fp32, under bf16 autocast, and in what ``auto`` picks.

    python bench/dtype.py [--quick] [--tokens N]

SmolLM2 with fp32 weights (the learner's master copy), a forward over N tokens, three
arms alternating after one untimed warm-up each, their order rotated every round so that
no arm always runs right after the slow one; prints seconds per forward and the ratio of
the faster of fp32/bf16 to ``auto`` (1.0: auto picked the faster; where ``auto`` runs the
same arithmetic as one arm, what is left is the machine's noise).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from agents.model import ModelConfig, load_model
from agents.precision import resolve_dtype


@torch.no_grad()
def _forward_s(model: torch.nn.Module, ids: torch.Tensor, autocast: torch.dtype | None) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
        model(input_ids=ids, logits_to_keep=1)
    return time.perf_counter() - start


def measure(quick: bool, tokens: int | None = None) -> tuple[list[str], dict[str, float]]:
    tokens = tokens or (256 if quick else 1024)
    repeats = 2 if quick else 5
    model, _ = load_model(ModelConfig(name="smollm2", dtype="float32"))
    auto = resolve_dtype("auto")
    arms = {"float32": None, "bfloat16": torch.bfloat16, "auto": auto.autocast}
    ids = torch.randint(1000, 20000, (1, tokens), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(repeats + 1):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds = _forward_s(model, ids, arms[name])
            if r:  # round 0 is the warm-up
                times[name].append(seconds)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    lines = [
        f"learner forward, SmolLM2, {tokens} tokens (median of {repeats}); auto: {auto.describe()}"
    ]
    lines += [f"  {name:<9} {s:7.3f} s" for name, s in medians.items()]
    best = min(medians["float32"], medians["bfloat16"])
    return lines, {"dtype_auto_vs_best": best / medians["auto"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tokens", type=int, default=None)
    args = parser.parse_args()
    lines, ratios = measure(args.quick, args.tokens)
    print("\n".join(lines))
    print(" ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
