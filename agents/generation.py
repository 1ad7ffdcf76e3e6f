"""Generation backends: token ids in, sampled ids and their behaviour log-probs out.

* ``hf`` -- transformers ``generate`` on CPU or GPU. All live siblings of a step go in one
  left-padded batch (8.7x the tokens/s of one at a time on CPU: shared/DESIGN.md).
* ``vllm`` -- for GPU machines (``agents/vllm_generation.py``; ``pip install
  toolgym[gpu]`` in its own venv); not installable on the CPU machines this project is
  developed on, so tested only up to the engine calls.

Log-probs are those of the sampling distribution, ``log_softmax(logits / temperature)``
before top-p (greedy: temperature 1), which is what the learner recomputes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from envs.core import ConfigError


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


class HFGenerator:
    """Batched ``model.generate`` with left padding."""

    def __init__(self, model: torch.nn.Module, end_id: int, pad_id: int):
        self.model = model
        self.end_id = end_id
        self.pad_id = pad_id

    @torch.no_grad()
    def sync_weights(self, learner: torch.nn.Module) -> None:
        """Copy the learner's weights into the sampling model (dtype converted): what a
        vLLM sampler gets through ``collective_rpc`` on a GPU cluster."""
        for target, source in zip(self.model.parameters(), learner.parameters(), strict=True):
            target.copy_(source)

    @torch.no_grad()
    def generate(
        self, contexts: list[list[int]], slots: list[int], sampling: SamplingConfig, seed: int
    ) -> list[Generated]:
        width = max(len(c) for c in contexts)
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(contexts), width), self.pad_id, dtype=torch.long)  # (B, L)
        attention = torch.zeros((len(contexts), width), dtype=torch.long)  # (B, L)
        for row, ids in enumerate(contexts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        greedy = sampling.temperature <= 0
        torch.manual_seed(seed)
        out = self.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self.end_id,
            pad_token_id=self.pad_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new = out.sequences[:, width:].cpu()  # (B, N)
        logits = torch.stack(out.logits, dim=1).float().cpu()  # (B, N, V)
        if not greedy:
            logits = logits / sampling.temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        results = []
        for row in range(len(contexts)):
            ids = new[row].tolist()
            end = ids.index(self.end_id) + 1 if self.end_id in ids else len(ids)
            results.append(Generated(ids[:end], logprobs[row, :end].tolist(), self.end_id in ids))
        return results


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


def make_generator(
    backend: str, model: torch.nn.Module, end_id: int, pad_id: int, model_path: str | None = None
) -> Generator:
    """``hf`` (this process's model) or ``vllm`` (a GPU engine on ``model_path``)."""
    if backend == "hf":
        return HFGenerator(model, end_id, pad_id)
    if backend == "vllm":
        from agents.vllm_generation import VLLMConfig, VLLMGenerator

        if model_path is None:
            raise ConfigError("the vllm backend loads a checkpoint: set model.init_from")
        return VLLMGenerator(model_path, end_id, VLLMConfig())
    raise ConfigError(f"unknown generation backend {backend!r}; known: ['hf', 'vllm']")
