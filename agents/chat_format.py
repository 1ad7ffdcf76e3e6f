"""Chat rendering, token-in/token-out.

The format is ChatML (``<|im_start|>role\\n...<|im_end|>``) with Hermes tool calls, written
here rather than taken from the tokenizer's template: SmolLM2's template ignores
``tools=``, and an episode must be built by appending token segments, never by
re-rendering the whole chat (re-tokenising text drifts from the sampled ids).

An episode's ids are ``prompt`` + (``generated`` + ``observation``)*: the model's own
sampled ids (ending in ``<|im_end|>``) and, after each, the env's reply rendered as a new
user turn and the next assistant header. Tool results go in ``<tool_response>`` blocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from agents.tool_format import CLOSE, OPEN

TOOL_INSTRUCTIONS = (
    '# Tools\nTo call a tool, write {open}{{"name": <tool name>, "arguments": '
    "<JSON object>}}{close}. Available tools:\n{tools}"
)


@dataclass(frozen=True)
class ChatFormatConfig:
    tool_schema_style: str = "signature"
    """``signature``: one line per tool (552 tokens for tau3-airline's 14 tools) or
    ``json``: the full JSON schemas (3,251 tokens) -- shared/FACTS.md."""


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
    """Renders env observations into token ids for one tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: ChatFormatConfig):
        if config.tool_schema_style not in ("signature", "json"):
            raise ValueError(
                f"unknown tool_schema_style {config.tool_schema_style!r}; use signature or json"
            )
        self.tokenizer = tokenizer
        self.config = config
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def system_text(self, policy: str, tools: list[dict[str, Any]]) -> str:
        if self.config.tool_schema_style == "json":
            listed = "\n".join(json.dumps(t["function"]) for t in tools)
        else:
            listed = "\n".join(f"- {tool_signature(t)}" for t in tools)
        return (
            policy.strip() + "\n\n" + TOOL_INSTRUCTIONS.format(open=OPEN, close=CLOSE, tools=listed)
        )

    @staticmethod
    def _turn(message: dict[str, str]) -> str:
        if message["role"] == "tool":
            return f"<tool_response>\n{message['content']}\n</tool_response>"
        return message["content"]

    def render_reset(self, observation: dict[str, Any]) -> list[int]:
        """Ids of the episode's first context: system (policy + tools), opening messages,
        and the assistant header the model continues from."""
        messages = observation["messages"]
        system = [m["content"] for m in messages if m["role"] == "system"]
        text = (
            f"<|im_start|>system\n{self.system_text(chr(10).join(system), observation['tools'])}"
            "<|im_end|>\n"
        )
        text += self._user_block([m for m in messages if m["role"] != "system"])
        return self._encode(text)

    def _user_block(self, messages: list[dict[str, str]]) -> str:
        body = "\n".join(self._turn(m) for m in messages)
        return f"<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"

    def render_observation(self, observation: dict[str, Any]) -> list[int]:
        """Ids that follow the model's ``<|im_end|>``: the env's reply and the next header."""
        return self._encode("\n" + self._user_block(observation["messages"]))

    def render_sft_target(self, text: str) -> list[int]:
        """Ids of an assistant message the model should have written (for SFT)."""
        return self._encode(text) + [self.end_id]
