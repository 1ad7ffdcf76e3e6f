"""Chat backends: the external LLM of the simulated user and of SGCD's credit analyst.

Each implements ``envs.users.ChatBackend`` (``model``, ``complete(messages, *,
temperature, seed) -> str``) and accounts its calls, tokens, cost and latency in
``usage``. Backends:

* ``anthropic`` -- the official SDK; key from ``ANTHROPIC_API_KEY`` (never from config);
  retries with exponential backoff on overload (529), rate limits (429), 5xx and timeouts
  are the SDK's, bounded by ``max_retries`` and ``timeout_s``. API version 2026-10-21
  (sent by SDK 2.x) rejects temperature/top_p/top_k, so this backend samples at the
  model's default: ``supports_temperature`` is False and callers pass ``None``.
* ``openai`` -- any OpenAI-compatible server (vLLM, llama.cpp, a hosted API).
* ``local`` -- a transformers model on this machine (``agents.model`` names).

:class:`EarlyStartChat` wraps a hosted backend so that a request can be sent before its
reply is asked for (SGCD's analyst, as each group's rollouts end).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from envs.config import ConfigError, build_config


class ChatBackendError(RuntimeError):
    """The chat model could not answer (after the configured retries)."""


@dataclass
class ChatUsage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0

    def add(self, input_tokens: int, output_tokens: int, cost_usd: float, seconds: float) -> None:
        self.calls += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += cost_usd
        self.seconds += seconds
        recording = getattr(_recording, "usage", None)
        if recording is not None and recording is not self:
            recording.add(input_tokens, output_tokens, cost_usd, seconds)

    def merge(self, other: ChatUsage) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.seconds += other.seconds


_recording = threading.local()


@contextmanager
def recorded_usage() -> Iterator[ChatUsage]:
    """The usage of the calls this thread makes inside the block, apart from the other
    threads' (a backend's own ``usage`` sums every thread's calls)."""
    usage = ChatUsage()
    _recording.usage = usage
    try:
        yield usage
    finally:
        _recording.usage = None


@dataclass
class AnthropicConfig:
    model: str = "claude-sonnet-4-5"
    """Model id sent to the Messages API."""
    max_tokens: int = 1024
    """Longest reply."""
    max_retries: int = 4
    """SDK retries (exponential backoff) on 429/529/5xx/timeouts before giving up."""
    timeout_s: float = 60.0
    """Per-request timeout."""
    base_url: str | None = None
    """None: the public API. Set for a proxy (or a loopback test server)."""
    api_key_env: str = "ANTHROPIC_API_KEY"
    """Environment variable holding the key; keys never live in config files."""
    price_input_per_mtok: float = 3.0
    """USD per million input tokens (list price of the default model when written)."""
    price_output_per_mtok: float = 15.0
    """USD per million output tokens."""


@dataclass
class OpenAIConfig:
    model: str = "???"
    """Model name the server knows."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """The server's OpenAI-compatible endpoint."""
    max_tokens: int = 1024
    max_retries: int = 4
    timeout_s: float = 60.0
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the key (a local server accepts any)."""
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0


@dataclass
class LocalConfig:
    model: str = "smollm2"
    """An ``agents.model`` name: smollm2, tiny-random, a checkpoint dir or a hub id."""
    max_tokens: int = 256
    dtype: str = "auto"


def _cost(cfg: Any, input_tokens: int, output_tokens: int) -> float:
    return (
        input_tokens * cfg.price_input_per_mtok + output_tokens * cfg.price_output_per_mtok
    ) / 1e6


def _api_key(env_var: str, required: bool) -> str:
    key = os.environ.get(env_var)
    if not key and required:
        raise ConfigError(f"set {env_var} in the environment to use this chat backend")
    return key or "unused"


@dataclass
class AnthropicChat:
    config: AnthropicConfig
    usage: ChatUsage = field(default_factory=ChatUsage)
    supports_temperature = False

    def __post_init__(self) -> None:
        import anthropic

        self._errors = (anthropic.APIStatusError, anthropic.APIConnectionError)
        self.model = self.config.model
        self._client = anthropic.Anthropic(
            api_key=_api_key(self.config.api_key_env, required=True),
            base_url=self.config.base_url,
            max_retries=self.config.max_retries,
            timeout=self.config.timeout_s,
        )

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float | None, seed: int | None
    ) -> str:
        if temperature is not None:
            raise ConfigError(
                "the anthropic backend cannot set a temperature (API 2026-10-21 rejects it): "
                "set it to null"
            )
        # The Messages API takes the system prompt apart and has no seed parameter.
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        start = time.perf_counter()
        try:
            reply = self._client.messages.create(
                model=self.config.model,
                max_tokens=self.config.max_tokens,
                system=system,
                messages=turns,
            )
        except self._errors as e:
            raise ChatBackendError(f"anthropic {self.config.model}: {e}") from e
        text = "".join(block.text for block in reply.content if block.type == "text")
        u = reply.usage
        self.usage.add(
            u.input_tokens,
            u.output_tokens,
            _cost(self.config, u.input_tokens, u.output_tokens),
            time.perf_counter() - start,
        )
        return text


@dataclass
class OpenAIChat:
    config: OpenAIConfig
    usage: ChatUsage = field(default_factory=ChatUsage)
    supports_temperature = True

    def __post_init__(self) -> None:
        import openai

        if self.config.model == "???":
            raise ConfigError("the openai chat backend needs a model name (backend.model=...)")
        self._errors = (openai.APIStatusError, openai.APIConnectionError)
        self.model = self.config.model
        self._client = openai.OpenAI(
            api_key=_api_key(self.config.api_key_env, required=False),
            base_url=self.config.base_url,
            max_retries=self.config.max_retries,
            timeout=self.config.timeout_s,
        )

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float | None, seed: int | None
    ) -> str:
        start = time.perf_counter()
        try:
            reply = self._client.chat.completions.create(
                model=self.config.model,
                messages=messages,
                max_tokens=self.config.max_tokens,
                temperature=temperature,
                seed=seed,
            )
        except self._errors as e:
            raise ChatBackendError(f"openai-compatible {self.config.model}: {e}") from e
        u = reply.usage
        tokens_in, tokens_out = (u.prompt_tokens, u.completion_tokens) if u else (0, 0)
        self.usage.add(
            tokens_in,
            tokens_out,
            _cost(self.config, tokens_in, tokens_out),
            time.perf_counter() - start,
        )
        return reply.choices[0].message.content or ""


@dataclass
class LocalChat:
    """A transformers model answering with its own chat template. Requests given together
    (:meth:`complete_batch`) decode in one batch; each is sampled from its own generator,
    seeded by the call's seed (0 when None) and its position, so a reply depends on neither
    the threads around it nor the other requests' lengths."""

    config: LocalConfig
    usage: ChatUsage = field(default_factory=ChatUsage)
    supports_temperature = True
    # one batch at a time: the generator's batch state is not shared between threads
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        from agents.chat_format import ChatFormat, ChatFormatConfig
        from agents.hf_generation import HFGenerator
        from agents.model import ModelConfig, load_model

        self.model = self.config.model
        model, self._tokenizer = load_model(
            ModelConfig(name=self.config.model, dtype=self.config.dtype)
        )
        turns = ChatFormat(self._tokenizer, ChatFormatConfig())  # its end-of-turn and pad ids
        self._generator = HFGenerator(model, turns.end_id, turns.pad_id, kv_cache=True)

    @property
    def weights(self) -> Any:
        """The transformers model that answers (what each decode step reads)."""
        return self._generator.model

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float | None, seed: int | None
    ) -> str:
        return self.complete_batch([messages], temperature=temperature, seed=seed)[0]

    def complete_batch(
        self,
        requests: list[list[dict[str, str]]],
        *,
        temperature: float | None,
        seed: int | None,
    ) -> list[str]:
        from agents.generation import SamplingConfig

        sampling = SamplingConfig(
            temperature=1.0 if temperature is None else temperature,  # the model's default
            top_p=1.0,
            max_new_tokens=self.config.max_tokens,
        )
        start = time.perf_counter()
        contexts = [
            list(
                self._tokenizer.apply_chat_template(
                    m, add_generation_prompt=True, tokenize=True, return_dict=True
                )["input_ids"]
            )
            for m in requests
        ]
        slots = list(range(len(requests)))
        with self._lock:
            outputs = self._generator.generate(contexts, slots, sampling, seed=seed or 0)
            self._generator.release(slots)
        seconds = (time.perf_counter() - start) / len(requests)
        replies = []
        for context, out in zip(contexts, outputs, strict=True):
            self.usage.add(len(context), len(out.ids), 0.0, seconds)
            replies.append(self._tokenizer.decode(out.ids, skip_special_tokens=True).strip())
        return replies


class EarlyStartChat:
    """A hosted backend whose requests can be sent before their replies are needed:
    :meth:`start` sends one now, in a thread; :meth:`complete` with the same messages,
    temperature and seed takes its reply (or its error), and sends a request not started.
    ``usage`` accounts the calls :meth:`complete` took, when they were taken, so a step's
    usage holds its own calls whenever they ran."""

    def __init__(self, backend: Any, max_concurrent: int) -> None:
        self.backend = backend
        self.model = backend.model
        self.supports_temperature = backend.supports_temperature
        self.usage = ChatUsage()
        self._started: dict[str, deque[Future]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="chat")

    def start(
        self, messages: list[dict[str, str]], *, temperature: float | None, seed: int | None
    ) -> None:
        future = self._pool.submit(self._call, messages, temperature, seed)
        with self._lock:
            self._started.setdefault(_request_key(messages, temperature, seed), deque()).append(
                future
            )

    def complete(
        self, messages: list[dict[str, str]], *, temperature: float | None, seed: int | None
    ) -> str:
        with self._lock:
            waiting = self._started.get(_request_key(messages, temperature, seed))
            future = waiting.popleft() if waiting else None
        text, usage = future.result() if future else self._call(messages, temperature, seed)
        with self._lock:
            self.usage.merge(usage)
        return text

    def drop_unused(self) -> int:
        """Forget the started requests nobody asked for (their replies are discarded);
        returns how many there were."""
        with self._lock:
            unused = sum(len(w) for w in self._started.values())
            self._started.clear()
        return unused

    def _call(
        self, messages: list[dict[str, str]], temperature: float | None, seed: int | None
    ) -> tuple[str, ChatUsage]:
        with recorded_usage() as usage:
            text = self.backend.complete(messages, temperature=temperature, seed=seed)
        return text, usage


def _request_key(
    messages: list[dict[str, str]], temperature: float | None, seed: int | None
) -> str:
    return json.dumps([messages, temperature, seed], sort_keys=True)


def waits_on_network(backend: Any) -> bool:
    """Whether ``backend``'s calls wait on another machine (a hosted API, a server) rather
    than compute on this one's cores (:class:`LocalChat`): only then is there idle time
    to overlap with other work."""
    return backend is not None and not isinstance(backend, LocalChat)


def complete_many(
    backend: Any,
    requests: list[list[dict[str, str]]],
    *,
    temperature: float | None,
    seed: int | None,
    max_concurrent: int,
) -> list[str | None]:
    """Replies to several requests, ``None`` where the backend failed (its own retries
    spent): one batch where the backend decodes batches (``complete_batch``), else at most
    ``max_concurrent`` calls in flight."""
    if not requests:
        return []
    if hasattr(backend, "complete_batch"):
        try:
            return backend.complete_batch(requests, temperature=temperature, seed=seed)
        except ChatBackendError:
            return [None] * len(requests)

    def one(messages: list[dict[str, str]]) -> str | None:
        try:
            return backend.complete(messages, temperature=temperature, seed=seed)
        except ChatBackendError:
            return None

    workers = max(1, min(max_concurrent, len(requests)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, requests))


BACKENDS = {
    "anthropic": (AnthropicChat, AnthropicConfig),
    "openai": (OpenAIChat, OpenAIConfig),
    "local": (LocalChat, LocalConfig),
}


def _backend_config(cfg: dict[str, Any]) -> tuple[type, Any]:
    kind = cfg.get("kind")
    if kind not in BACKENDS:
        raise ConfigError(f"unknown chat backend {kind!r}; known: {sorted(BACKENDS)}")
    backend_class, config_class = BACKENDS[kind]
    options = {k: v for k, v in cfg.items() if k != "kind"}
    return backend_class, build_config(config_class, options, f"chat backend {kind}")


def check_chat_backend(cfg: dict[str, Any]) -> None:
    """What :func:`make_chat_backend` would refuse, found without a model or a request: the
    options, a hosted backend's API key, a local backend's model."""
    backend_class, config = _backend_config(cfg)
    if backend_class is AnthropicChat:
        _api_key(config.api_key_env, required=True)
    if backend_class is LocalChat:
        from agents.model import ModelConfig, model_source_problem

        problem = model_source_problem(ModelConfig(name=config.model, dtype=config.dtype))
        if problem:
            raise ConfigError(problem)


def make_chat_backend(cfg: dict[str, Any]):
    """``cfg``: ``{"kind": "anthropic"|"openai"|"local", ...that backend's config fields}``."""
    backend_class, config = _backend_config(cfg)
    return backend_class(config)
