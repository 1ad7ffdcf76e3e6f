"""Generation backends: token ids in, sampled ids and their behaviour log-probs out.

* ``hf`` -- a transformers model on CPU or GPU (``agents/hf_generation.py``): all live
  episodes of a step decode in one batch, each keeping its keys/values across turns.
* ``vllm`` -- for GPU machines (``agents/vllm_generation.py``; ``pip install
  toolgym[gpu]`` in its own venv); not installable on the CPU machines this project is
  developed on, so tested only up to the engine calls.

Log-probs are those of the sampling distribution, ``log_softmax(logits / temperature)``
before top-p (greedy: temperature 1), which is what the learner recomputes. Sampling is
seeded per episode (``seed`` and the slot), so an episode's tokens do not depend on which
other episodes share its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0
    """0 means greedy. Paper: 1.0 on AppWorld, 0.4 on tau3-airline (Tables 3-4)."""
    top_p: float = 1.0
    """Nucleus sampling mass (paper: 1.0 / 0.95)."""
    max_new_tokens: int = 256
    """Longest assistant message, in tokens."""


@dataclass
class Generated:
    ids: list[int]
    logprobs: list[float]
    finished: bool  # ended with the end-of-turn token (False: cut at max_new_tokens)


class Generator(Protocol):
    def generate(
        self, contexts: list[list[int]], slots: list[int], sampling: SamplingConfig, seed: int
    ) -> list[Generated]:
        """One assistant message per context; ``slots`` name the episodes they belong to."""
        ...

    def release(self, slots: list[int]) -> None:
        """The episodes in ``slots`` ended: drop whatever was kept for them."""
        ...


class ScriptedGenerator:
    """Writes given assistant messages instead of sampling, one list per episode slot.

    Turns a scripted policy (a task's gold solution) into an episode record with the same
    token layout as a sampled one: how SFT data are made from gold replays.
    ``encode(text)`` gives the message's ids, end-of-turn token included.
    """

    def __init__(self, encode: Callable[[str], list[int]], scripts: dict[int, list[str]]):
        self.encode = encode
        self.scripts = {slot: list(texts) for slot, texts in scripts.items()}

    def generate(
        self, contexts: list[list[int]], slots: list[int], sampling: SamplingConfig, seed: int
    ) -> list[Generated]:
        out = []
        for slot in slots:
            if not self.scripts[slot]:
                raise RuntimeError(f"the script of slot {slot} ran out before its episode ended")
            ids = self.encode(self.scripts[slot].pop(0))
            out.append(Generated(ids, [0.0] * len(ids), finished=True))
        return out

    def release(self, slots: list[int]) -> None:
        """Nothing to drop: a script is consumed as it is written."""
