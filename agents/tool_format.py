"""The text form of tool calls: Hermes/Qwen-style ``<tool_call>{json}</tool_call>`` blocks.

The model writes free text with zero or more blocks, each a JSON object
``{"name": str, "arguments": {...}}``, or a message that is one such object alone (with
``parameters`` for ``arguments``: what Llama 3.1's template asks for). ``parse_action``
turns that text into the env's typed :class:`~envs.core.AgentAction`; ``format_action``
writes an action back in the Hermes form (gold replays, SFT targets), so
``parse_action(format_action(a)) == a``.
Reasoning blocks (``<think>...</think>``) are kept in ``content`` untouched.
"""

from __future__ import annotations

import json
import re

from envs.core import AgentAction, ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|$)", re.DOTALL)


def _json(raw: str) -> object | None:
    """The JSON value of ``raw``, or None where it is not JSON (too deeply nested JSON
    raises RecursionError, not a decode error: model text must never end a rollout)."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return None


def _read_call(raw: str) -> ToolCall | None:
    data = _json(raw)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):  # some models double-encode the arguments
        arguments = _json(arguments)
    if not isinstance(arguments, dict):
        return None
    return ToolCall(name=data["name"], arguments=arguments)


def parse_action(text: str) -> AgentAction:
    """Split model output into message text, readable tool calls and malformed ones."""
    calls: list[ToolCall] = []
    malformed: list[str] = []
    for match in _BLOCK.finditer(text):
        raw = match.group(1).strip()
        call = _read_call(raw)
        if call is None:
            malformed.append(raw)
        else:
            calls.append(call)
    content = _BLOCK.sub("", text).strip()
    bare = _read_call(content) if content.startswith("{") and not (calls or malformed) else None
    if bare is not None:  # Llama 3.1's form: the whole message one JSON call
        return AgentAction(tool_calls=(bare,))
    return AgentAction(content=content, tool_calls=tuple(calls), malformed=tuple(malformed))


def format_action(action: AgentAction) -> str:
    """The text a model should emit for ``action`` (ids are not part of the text form)."""
    blocks = [
        OPEN + json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False) + CLOSE
        for c in action.tool_calls
    ]
    return "\n".join(([action.content] if action.content else []) + blocks)
