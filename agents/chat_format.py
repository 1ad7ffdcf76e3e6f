"""Chat rendering with the tokenizer's own chat template, token-in/token-out.

An episode's ids are ``prompt`` + (``generated`` + ``observation``)*: the model's own
sampled ids (ending in the template's end-of-turn token) and, after each, the env's reply
and the next assistant header. Each segment is rendered by the template once and appended;
the chat is never rendered whole again (re-tokenising text drifts from the sampled ids).

- The prompt: ``apply_chat_template(messages, tools=..., add_generation_prompt=True)``. A
  template that ignores ``tools=`` (SmolLM2's) gets the tools listed in the system message
  instead, with how to call them.
- An observation: what the template writes after an assistant message's end-of-turn token
  in the chat ``[user, assistant, *observation]`` with the generation prompt (the rest of
  the turn's end, the env's messages as the template lays them out, e.g. Qwen's tool
  results in a user turn, Llama 3.1's in an ``ipython`` one, and the next header).
- :class:`TurnMarkers`, read off the template once with marker messages: the end-of-turn
  token and each role's header, for the code that reads or inserts a turn in an episode
  (teacher prompts, a chat backend acting on an episode).

Tool calls are parsed by agents/tool_format.py whatever the template.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from agents.tool_format import CLOSE, OPEN
from envs.config import ConfigError

TOOL_INSTRUCTIONS = (
    '# Tools\nTo call a tool, write {open}{{"name": <tool name>, "arguments": '
    "<JSON object>}}{close}. Available tools:\n{tools}"
)

# marker contents: plain words no template rewrites, found again in the rendered text
_USER, _ASSISTANT, _OTHER = "toolgymUserMark", "toolgymAssistantMark", "toolgymOtherMark"
_PROBE_TOOL = {
    "type": "function",
    "function": {"name": "toolgymProbeTool", "description": "", "parameters": {}},
}


@dataclass(frozen=True)
class ChatFormatConfig:
    tool_schema_style: str = "signature"
    """``signature``: one line per tool (552 tokens for tau3-airline's 14 tools) or
    ``json``: the full JSON schemas (3,251 tokens) -- shared/FACTS.md. Used where the
    template ignores ``tools=``; a template that renders tools writes them its own way."""


@dataclass(frozen=True)
class TurnMarkers:
    """The text around turns in one template: ``end`` closes a turn and begins with
    ``end_token``, the end-of-turn token the model samples (ChatML: ``<|im_end|>`` then a
    newline); ``headers[role]`` opens a turn of ``role`` (``assistant``: the generation
    prompt)."""

    end: str
    end_token: str
    headers: dict[str, str]

    def block(self, role: str, content: str) -> str:
        """One whole turn of ``role``, as the template writes it mid-chat."""
        return self.headers[role] + content + self.end

    def turns(self, text: str) -> list[tuple[str, str]]:
        """``(role, content)`` of each turn in rendered ``text`` (an unclosed last turn
        included), the longest header first where one header begins another (Qwen's tool
        results are a user turn that opens with ``<tool_response>``)."""
        by_header = {h: role for role, h in self.headers.items()}
        opening = "|".join(re.escape(h) for h in sorted(by_header, key=len, reverse=True))
        pattern = f"({opening})(.*?)(?:{re.escape(self.end_token)}|$)"
        return [(by_header[h], body) for h, body in re.findall(pattern, text, re.DOTALL)]


def _type_name(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(json.dumps(v) for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list[{_type_name(schema.get('items', {}))}]"
    if "anyOf" in schema:
        return "|".join(_type_name(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    return schema.get("type", "any")


def tool_signature(schema: dict[str, Any]) -> str:
    """``name(arg: type, ...): description`` from an OpenAI function schema."""
    fn = schema["function"]
    props = fn.get("parameters", {}).get("properties", {})
    args = ", ".join(f"{k}: {_type_name(v)}" for k, v in props.items())
    description = " ".join(fn.get("description", "").split())
    return f"{fn['name']}({args}): {description}"


class ChatFormat:
    """Renders env observations into token ids for one tokenizer, with its chat template."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: ChatFormatConfig):
        if config.tool_schema_style not in ("signature", "json"):
            raise ConfigError(
                f"chat_format.tool_schema_style={config.tool_schema_style!r}: "
                "expected signature or json"
            )
        if not tokenizer.chat_template:
            raise ConfigError(
                f"tokenizer {tokenizer.name_or_path!r} has no chat template: "
                "choose a chat (instruct) model"
            )
        self.tokenizer = tokenizer
        self.config = config
        self.markers = self._read_markers()
        self.end_id = self._encode(self.markers.end)[0]
        # padding is always masked: any id serves where a tokenizer has none (Llama 3)
        self.pad_id = self.end_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
        self.template_renders_tools = _PROBE_TOOL["function"]["name"] in self._render(
            [{"role": "user", "content": _USER}], generation=False, tools=[_PROBE_TOOL]
        )

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _render(
        self,
        messages: list[dict[str, str]],
        generation: bool,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=generation, tokenize=False
        )

    def _after_assistant(self, messages: list[dict[str, str]], generation: bool) -> str:
        """The text the template writes after an assistant message's content when
        ``messages`` follow it (from its end-of-turn token on)."""
        chat = [{"role": "user", "content": _USER}, {"role": "assistant", "content": _ASSISTANT}]
        text = self._render(chat + messages, generation)
        return text[text.index(_ASSISTANT) + len(_ASSISTANT) :]

    def _read_markers(self) -> TurnMarkers:
        end = self._after_assistant([], generation=False)
        first = self._encode(end)[:1]
        if not first or first[0] not in self.tokenizer.added_tokens_decoder:
            raise ConfigError(
                f"tokenizer {self.tokenizer.name_or_path!r}: its chat template does not end "
                f"an assistant turn with a special token (it writes {end!r})"
            )
        headers = {}
        for role in ("system", "user", "tool"):
            after = self._after_assistant([{"role": role, "content": _OTHER}], generation=False)
            if not after.startswith(end) or _OTHER not in after:
                raise ConfigError(
                    f"tokenizer {self.tokenizer.name_or_path!r}: its chat template cannot "
                    f"write a {role!r} turn after an assistant turn"
                )
            headers[role] = after[len(end) : after.index(_OTHER)]
        after = self._after_assistant([{"role": "user", "content": _OTHER}], generation=True)
        headers["assistant"] = after[after.index(_OTHER) + len(_OTHER) + len(end) :]
        return TurnMarkers(end, self.tokenizer.convert_ids_to_tokens(first[0]), headers)

    def system_text(self, policy: str, tools: list[dict[str, Any]]) -> str:
        """The system message: the policy, and the tools where the template ignores them."""
        if self.template_renders_tools:
            return policy.strip()
        if self.config.tool_schema_style == "json":
            listed = "\n".join(json.dumps(t["function"]) for t in tools)
        else:
            listed = "\n".join(f"- {tool_signature(t)}" for t in tools)
        return (
            policy.strip() + "\n\n" + TOOL_INSTRUCTIONS.format(open=OPEN, close=CLOSE, tools=listed)
        )

    def render_reset(self, observation: dict[str, Any]) -> list[int]:
        """Ids of the episode's first context: system (policy, tools), opening messages and
        the assistant header the model continues from."""
        messages = observation["messages"]
        policy = "\n".join(m["content"] for m in messages if m["role"] == "system")
        system = {"role": "system", "content": self.system_text(policy, observation["tools"])}
        chat = [system] + [m for m in messages if m["role"] != "system"]
        tools = observation["tools"] if self.template_renders_tools else None
        return self._encode(self._render(chat, generation=True, tools=tools))

    def render_observation(self, observation: dict[str, Any]) -> list[int]:
        """Ids that follow the model's end-of-turn token: the env's reply, the next header."""
        after = self._after_assistant(observation["messages"], generation=True)
        return self._encode(after[len(self.markers.end_token) :])

    def render_sft_target(self, text: str) -> list[int]:
        """Ids of an assistant message the model should have written (for SFT)."""
        return self._encode(text) + [self.end_id]
