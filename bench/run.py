"""Every throughput figure of the project, measured side by side on this machine.

    python -m bench.run [--quick]        # make bench / make bench-quick

Prints what the CPU can do (its capability, bf16 flags and what ``dtype: auto`` picks),
then each benchmark's table, then one line of ratios measured in this run, each "higher
is better" except the ``sgcd_*`` ones (SGCD's step time over GRPO's). ``--quick`` runs
reduced versions (~6 minutes on 2 cores). Figures differ between machines: quote a ratio
with the header it was measured under.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from agents.precision import resolve_dtype
from bench import appworld_env, dtype, hosted_step, learner, rollouts, scoring

# name -> measure(quick) returning (table lines, ratios)
BENCHMARKS: dict[str, Callable[[bool], tuple[list[str], dict[str, float]]]] = {
    "dtype": dtype.measure,
    "rollouts": rollouts.measure,
    "scoring": lambda quick: _named(scoring.measure(quick), "scoring_vs_tau2"),
    "appworld": lambda quick: _named(appworld_env.measure(quick), "appworld_2_vs_1_servers"),
    "learner": learner.measure,
    "hosted_step": hosted_step.measure,
}
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _named(result: tuple[list[str], float], name: str) -> tuple[list[str], dict[str, float]]:
    lines, ratio = result
    return lines, {name: ratio}


def machine_header() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    have = " ".join(f"{f}{'+' if f in flags else '-'}" for f in FLAGS)
    return [
        f"cpu: {model}; torch capability {torch.backends.cpu.get_cpu_capability()}; "
        f"{torch.get_num_threads()} threads",
        f"flags: {have}",
        f"auto: {resolve_dtype('auto').describe()}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced runs (~2 min)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    args = parser.parse_args()
    print("\n".join(machine_header()), flush=True)
    ratios: dict[str, float] = {}
    for name in args.only or BENCHMARKS:
        start = time.perf_counter()
        lines, figures = BENCHMARKS[name](args.quick)
        print("\n".join(lines) + f"\n  ({name}: {time.perf_counter() - start:.0f} s)", flush=True)
        ratios.update(figures)
    print("ratios: " + " ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
