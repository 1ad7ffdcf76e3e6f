"""The agent-side adapter teacher-scored credit needs (``credit.teacher.TaskPrompts``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agents.chat_format import ChatFormat
from agents.episode import EpisodeGroup
from agents.tool_format import format_action
from credit.sanitizer import PrivateValues
from envs.core import AgentAction, TaskLabels


class ChatTaskPrompts:
    """Reads tasks as our chat format renders them; inserts teacher text as a system block
    just before the first assistant header, so the teacher prompt shares the student's
    whole prompt up to there and the student's ids are untouched."""

    def __init__(self, chat: ChatFormat, labels: Callable[[str], TaskLabels], title: str):
        self.chat = chat
        self.labels = labels
        self.title = title
        self._header = chat.tokenizer(
            chat.markers.headers["assistant"], add_special_tokens=False
        ).input_ids

    def instruction(self, group: EpisodeGroup) -> str:
        text = self.chat.tokenizer.decode(group.prompt_ids, skip_special_tokens=False)
        user = text.rsplit(self.chat.markers.headers["user"], 1)[-1]
        return user.split(self.chat.markers.end_token, 1)[0].strip()

    def private_values(self, group: EpisodeGroup) -> PrivateValues:
        labels = self.labels(group.task_id)
        return PrivateValues.from_labels([c.arguments for c in labels.gold_calls], labels.answers)

    def reference_solution(self, group: EpisodeGroup) -> str:
        """The gold calls in the policy's tool-call format, then the answers to give."""
        labels = self.labels(group.task_id)
        lines = []
        if labels.gold_calls:
            lines.append("A correct solution makes these tool calls, in order:")
            lines.append(format_action(AgentAction(tool_calls=labels.gold_calls)))
        if labels.answers:
            lines.append("It tells the user: " + "; ".join(labels.answers))
        return "\n".join(lines) or "A correct solution makes no tool call and gives no answer."

    def teacher_prompt_ids(self, group: EpisodeGroup, context: str) -> list[int]:
        prompt = group.prompt_ids
        if prompt[-len(self._header) :] != self._header:
            raise ValueError(
                f"group {group.task_id}: the prompt does not end in an assistant header"
            )
        block = self.chat.tokenizer(
            self.chat.markers.block("system", f"{self.title}\n{context}"),
            add_special_tokens=False,
        ).input_ids
        return prompt[: -len(self._header)] + block + self._header

    def token_texts(self, ids: Sequence[int]) -> list[str]:
        return [self.chat.tokenizer.decode([i]) for i in ids]
