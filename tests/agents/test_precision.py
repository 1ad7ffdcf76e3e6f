"""``dtype: auto`` picks the faster dtype of this machine; explicit names win."""

import pytest
import torch

from agents.precision import resolve_dtype
from envs.config import ConfigError


def never_probe():
    raise AssertionError("an explicit dtype must not be timed")


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({"float32": 40.0, "bfloat16": 120.0}, torch.bfloat16),  # AVX512-BF16 / AMX
        ({"float32": 60.0, "bfloat16": 1.0}, torch.float32),  # AVX2 only
    ],
)
def test_auto_takes_the_faster_dtype_of_the_probe(figures, expected):
    precision = resolve_dtype("auto", "cpu", probe=lambda: figures)
    assert precision.dtype == expected
    assert precision.source == "cpu probe" and precision.gflops == figures
    record = precision.record()
    assert record["dtype"] == str(expected).removeprefix("torch.")
    assert record["probe_gflops"] == figures and record["cpu_capability"]
    assert precision.autocast == (None if expected == torch.float32 else expected)


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
def test_explicit_dtypes_are_used_as_given(name):
    precision = resolve_dtype(name, "cpu", probe=never_probe)
    assert precision.dtype == getattr(torch, name) and precision.source == "config"


def test_unknown_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="dtype=fp16: no such dtype"):
        resolve_dtype("fp16")


def test_the_real_probe_times_both_dtypes():
    figures = resolve_dtype("auto").gflops
    assert set(figures) == {"float32", "bfloat16"} and all(v > 0 for v in figures.values())


def test_one_slow_round_does_not_decide_the_probe(monkeypatch):
    """Rounds alternate the dtypes and each keeps its best: bf16's one slow round (as when
    another process took the core) loses to its other rounds, not to fp32."""
    from agents import precision

    rates = iter([150.0, 80.0] + [150.0, 600.0] * (precision.PROBE_ROUNDS - 1))
    monkeypatch.setattr(precision, "_probed", {})
    monkeypatch.setattr(precision, "_matmul_gflops", lambda *args: next(rates))
    chosen = resolve_dtype("auto")
    assert chosen.dtype == torch.bfloat16
    assert chosen.gflops == {"float32": 150.0, "bfloat16": 600.0}


def test_an_adopted_probe_decides_auto_without_timing(monkeypatch):
    """Runs a compare starts together adopt its probe figures instead of timing their own."""
    from agents import precision

    monkeypatch.setattr(precision, "_probed", {})
    monkeypatch.setattr(precision, "_matmul_gflops", lambda *args: pytest.fail("timed"))
    for figures, expected in (
        ({"float32": 9.0, "bfloat16": 1.0}, torch.float32),
        ({"float32": 1.0, "bfloat16": 9.0}, torch.bfloat16),
    ):
        precision.adopt_probe(figures)
        chosen = resolve_dtype("auto")
        assert (chosen.dtype, chosen.gflops) == (expected, figures)
