"""The vLLM backend up to the engine (vLLM needs CUDA and cannot be installed here)."""

import importlib.util
from dataclasses import dataclass

import pytest

from agents.build import make_generator
from agents.generation import SamplingConfig
from agents.vllm_generation import sampling_kwargs, to_generated
from envs.config import ConfigError


@dataclass
class Logprob:  # the shape of vllm.sequence.Logprob
    logprob: float


def test_sampling_kwargs_greedy_and_sampled():
    greedy = sampling_kwargs(SamplingConfig(temperature=0.0, top_p=0.9, max_new_tokens=7), 2, 5)
    assert greedy["temperature"] == 0.0 and greedy["top_p"] == 1.0 and greedy["max_tokens"] == 7
    assert greedy["stop_token_ids"] == [2] and greedy["logprobs"] == 0 and greedy["seed"] == 5
    sampled = sampling_kwargs(SamplingConfig(temperature=0.4, top_p=0.95), 2, 0)
    assert (sampled["temperature"], sampled["top_p"]) == (0.4, 0.95)


@pytest.mark.parametrize("ids,finished", [([10, 11, 2], True), ([10, 11, 12], False), ([], False)])
def test_to_generated_reads_the_sampled_tokens_logprobs(ids, finished):
    steps = [{t: Logprob(-0.5 * (k + 1)), 99: Logprob(-9.0)} for k, t in enumerate(ids)]
    out = to_generated(ids, steps, end_id=2)
    assert out.ids == ids and out.finished == finished
    assert out.logprobs == [-0.5 * (k + 1) for k in range(len(ids))]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_without_vllm_the_backend_is_a_clear_config_error(tiny):
    model, tokenizer = tiny
    with pytest.raises(ConfigError, match="model.init_from"):
        make_generator("vllm", model, 2, 2, model_path=None)
    with pytest.raises(ConfigError, match="GPU venv"):
        make_generator("vllm", model, 2, 2, model_path="/nonexistent")
    with pytest.raises(ConfigError, match="known"):
        make_generator("tgi", model, 2, 2)
