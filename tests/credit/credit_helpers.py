"""Builders for credit tests: a char-level prompt adapter and episodes.

Token ids are character codes, so token texts are exact and literals can be found in them.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from agents.episode import Episode, EpisodeGroup, Turn
from credit.sanitizer import PrivateValues

VOCAB = 512


def encode(text: str) -> list[int]:
    return [ord(c) % VOCAB for c in text]


def make_episode(turns: Sequence[tuple[str, str]], reward: float, **extra) -> Episode:
    """Each turn renders as ``<role>`` (template, mask 0) then its text (mask 1 if assistant)."""
    ids: list[int] = []
    mask: list[int] = []
    records = []
    for role, text in turns:
        header = encode(f"<{role}>")
        ids += header
        mask += [0] * len(header)
        start = len(ids)
        ids += encode(text)
        mask += [int(role == "assistant")] * len(text)
        records.append(Turn(role=role, start=start, end=len(ids), text=text))
    return Episode(
        task_id=extra.pop("task_id", "t1"),
        category="action",
        ids=ids,
        response_mask=mask,
        logprobs=[0.0] * len(ids),
        turns=records,
        reward=reward,
        **extra,
    )


def make_group(
    episodes: list[Episode], prompt: str = "<system>Book flights.<user>Hi"
) -> EpisodeGroup:
    return EpisodeGroup(
        task_id="t1", category="action", prompt_ids=encode(prompt), episodes=episodes
    )


class CharPrompts:
    """A TaskPrompts adapter over the char-level toy tokenizer.

    The teacher context goes in the middle of the prompt, as a chat template would put a
    system-side section, so student and teacher prompts share a prefix and then differ.
    """

    def __init__(self, private: PrivateValues | None = None) -> None:
        self.private = private or PrivateValues()
        self.contexts: list[str] = []

    def instruction(self, group: EpisodeGroup) -> str:
        return "".join(chr(i) for i in group.prompt_ids)

    def private_values(self, group: EpisodeGroup) -> PrivateValues:
        return self.private

    def teacher_prompt_ids(self, group: EpisodeGroup, context: str) -> list[int]:
        self.contexts.append(context)
        half = len(group.prompt_ids) // 2
        return group.prompt_ids[:half] + encode(f"[ref]{context}[/ref]") + group.prompt_ids[half:]

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        return [chr(i) for i in ids]


class RecordingAnalyst:
    """Test double for the external LLM (the real one, e.g. the Anthropic API, needs a
    network): records the messages and answers with a canned reply."""

    model = "test-analyst"
    supports_temperature = True

    def __init__(self, reply: str = "(1) check the reservation first") -> None:
        self.reply = reply
        self.calls: list[list[dict[str, str]]] = []
        self.usage = SimpleNamespace(cost_usd=0.0, input_tokens=0, output_tokens=0)

    def complete(self, messages, *, temperature, seed):
        self.calls.append(messages)
        self.usage.cost_usd += 0.25  # accounted as agents/chat.py's backends do
        self.usage.input_tokens += 1000
        return self.reply
