"""The vLLM generation backend, for GPU machines.

vLLM needs CUDA and its own venv (vLLM 0.33 pins torch 2.14 and transformers < 5.21:
``pip install toolgym[gpu]`` there); it cannot be installed on the CPU machines this project
is developed on. So this module is tested up to the boundary: the request it builds and
the way it reads vLLM's answers are plain functions with tests; the engine calls themselves
(``LLM.generate`` on token prompts, weight sync through ``collective_rpc``) have not run.

Token-in/token-out as with ``hf``: prompts go in as token ids, sampled ids and their
log-probs come back. ``logprobs_mode="processed_logprobs"`` makes vLLM report log-probs
after temperature, as the HF backend and the learner do (they differ only if top-p < 1,
where vLLM's also reflect the nucleus truncation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agents.generation import Generated, SamplingConfig
from envs.config import ConfigError


@dataclass(frozen=True)
class VLLMConfig:
    gpu_memory_utilization: float = 0.5
    """Share of the GPU vLLM may take (the learner needs the rest when colocated)."""
    dtype: str = "bfloat16"
    """Engine dtype."""
    enable_prefix_caching: bool = True
    """Siblings share their prompt: vLLM reuses its KV cache across them."""


def sampling_kwargs(sampling: SamplingConfig, end_id: int, seed: int) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments for one request (greedy when temperature is 0)."""
    greedy = sampling.temperature <= 0
    return {
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
        "stop_token_ids": [end_id],
        "logprobs": 0,  # the sampled token's log-prob only
        "seed": seed,
        "detokenize": False,
    }


def to_generated(token_ids: list[int], logprobs: list[dict[int, Any]], end_id: int) -> Generated:
    """One vLLM completion as a ``Generated``: ``logprobs[t]`` maps token id -> an object
    with ``.logprob`` (vLLM's ``Logprob``) and holds at least the sampled token."""
    values = [float(step[tok].logprob) for tok, step in zip(token_ids, logprobs, strict=True)]
    return Generated(list(token_ids), values, finished=bool(token_ids) and token_ids[-1] == end_id)


class WeightSyncExtension:
    """Mixed into vLLM's workers (``worker_extension_cls``): loads the learner's weights."""

    def toolgym_load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
        self.model_runner.model.load_weights(weights=named_tensors)


class VLLMGenerator:
    """An in-process ``vllm.LLM`` on the policy checkpoint; ``sync_weights`` after each
    learner step (the role ``_sync`` plays for the HF sampler)."""

    def __init__(self, model_path: str, end_id: int, config: VLLMConfig):
        try:
            from vllm import LLM
        except ImportError as e:
            raise ConfigError(
                "generation backend vllm needs a GPU venv with `pip install toolgym[gpu]`; "
                "use rollout.backend=hf on CPU"
            ) from e
        self.end_id = end_id
        self.llm = LLM(
            model=model_path,
            dtype=config.dtype,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enable_prefix_caching=config.enable_prefix_caching,
            logprobs_mode="processed_logprobs",
            worker_extension_cls=f"{__name__}.WeightSyncExtension",
        )

    def generate(
        self, contexts: list[list[int]], slots: list[int], sampling: SamplingConfig, seed: int
    ) -> list[Generated]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=c) for c in contexts]
        params = [SamplingParams(**sampling_kwargs(sampling, self.end_id, seed + s)) for s in slots]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            to_generated(list(o.outputs[0].token_ids), o.outputs[0].logprobs, self.end_id)
            for o in outputs
        ]

    def release(self, slots: list[int]) -> None:
        """Nothing to drop: vLLM's prefix cache manages its own blocks."""

    def sync_weights(self, model: torch.nn.Module) -> None:
        named = [(n, p.detach()) for n, p in model.state_dict().items()]
        self.llm.collective_rpc("toolgym_load_weights", args=(named,))
