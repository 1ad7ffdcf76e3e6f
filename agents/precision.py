"""Which float dtype is fastest here: what ``auto`` means in the model, learner and SFT
configs.

No dtype is right for every machine: on a CPU with AVX512-BF16 or AMX, bf16 runs 2-4x
faster than fp32; on an AVX2-only CPU it runs 10-50x *slower* (shared/FACTS.md). So
``auto`` takes bf16 on a CUDA device that supports it, and on a CPU times one matmul of a
transformer block's shape in each dtype (once per process, well under a second) and takes
the faster. Explicit ``float32`` / ``bfloat16`` / ``float16`` are used as given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from envs.config import ConfigError, did_you_mean

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# (tokens x hidden) @ (hidden x mlp): SmolLM2-135M's MLP up-projection on 256 tokens
PROBE_SHAPE = (256, 576, 1536)
PROBE_BUDGET_S = 0.15  # timed work per dtype after one warm-up call
# the budget is spent in rounds alternating the dtypes, each dtype's best round kept: a
# slow moment (another process, a page-fault storm) then costs one round, not the choice.
# One 0.15 s block per dtype once read bf16 83 vs fp32 157 GFLOP/s here, where bf16 runs
# at 570-740
PROBE_ROUNDS = 5


@dataclass(frozen=True)
class Precision:
    """A resolved dtype and why it was chosen (recorded in ``run.json``)."""

    dtype: torch.dtype
    source: str
    """``config`` (named explicitly), ``cuda`` or ``cpu probe``."""
    gflops: dict[str, float] = field(default_factory=dict)
    """The CPU probe's matmul GFLOP/s per dtype (empty when nothing was timed)."""

    @property
    def autocast(self) -> torch.dtype | None:
        """The dtype to autocast a forward to over fp32 weights (None: plain fp32)."""
        return None if self.dtype == torch.float32 else self.dtype

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def record(self) -> dict:
        return {
            "dtype": self.name,
            "source": self.source,
            "probe_gflops": self.gflops,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }

    def describe(self) -> str:
        figures = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in self.gflops.items())
        return f"dtype {self.name} ({self.source}{': ' + figures if figures else ''})"


def _operands(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    m, k, n = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(dtype)
    b = torch.randn(k, n, generator=generator).to(dtype)
    a @ b  # warm-up: kernel selection and first-touch allocation
    return a, b


def _matmul_gflops(a: torch.Tensor, b: torch.Tensor, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        a @ b
        calls += 1
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] * calls / (time.perf_counter() - start) / 1e9


_probed: dict[str, float] = {}  # the process's probe figures, measured or adopted


def probe_cpu() -> dict[str, float]:
    """Matmul GFLOP/s of fp32 and bf16 on this CPU (measured once per process)."""
    if not _probed:
        operands = {name: _operands(DTYPES[name]) for name in ("float32", "bfloat16")}
        best = dict.fromkeys(operands, 0.0)
        for _ in range(PROBE_ROUNDS):
            for name, (a, b) in operands.items():
                rate = _matmul_gflops(a, b, PROBE_BUDGET_S / PROBE_ROUNDS)
                best[name] = max(best[name], rate)
        _probed.update(best)
    return dict(_probed)


def adopt_probe(figures: dict[str, float]) -> None:
    """Use a parent process's probe figures instead of timing here: runs started together
    must not each time a matmul while the others load the CPU, or they may pick different
    dtypes."""
    _probed.clear()
    _probed.update(figures)


def check_dtype_name(name: str, key: str) -> None:
    """``auto`` or a name of :data:`DTYPES`, else a ConfigError naming ``key``."""
    if name != "auto" and name not in DTYPES:
        raise ConfigError(f"{key}={name}: no such dtype{did_you_mean(name, ['auto', *DTYPES])}")


def resolve_dtype(
    name: str,
    device: torch.device | str = "cpu",
    probe: Callable[[], dict[str, float]] = probe_cpu,
) -> Precision:
    """``name`` (a dtype name or ``auto``) as a :class:`Precision` for ``device``."""
    if name in DTYPES:
        return Precision(DTYPES[name], "config")
    check_dtype_name(name, "dtype")
    if torch.device(device).type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return Precision(torch.bfloat16 if bf16 else torch.float32, "cuda")
    gflops = probe()
    fastest = max(gflops, key=gflops.__getitem__)
    return Precision(DTYPES[fastest], "cpu probe", gflops)
