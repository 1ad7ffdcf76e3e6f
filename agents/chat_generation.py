"""A chat backend (Anthropic, an OpenAI-compatible server, a local model) as a generator."""

from __future__ import annotations

from agents.chat_format import ChatFormat
from agents.generation import Generated, SamplingConfig
from envs.users import ChatBackend


class ChatBackendGenerator:
    """A chat backend as the acting model -- a teacher writing SFT data, or a hosted model
    under evaluation (``rollout.backend=chat``): it reads the episode so far (its turns,
    split by the template's markers; tool results sent as user turns) and its reply is
    tokenised as the policy would write it. Its log-probs are unknown (zeros): its
    episodes are for SFT and evaluation, not RL."""

    def __init__(self, chat: ChatFormat, backend: ChatBackend, temperature: float | None):
        self.chat, self.backend, self.temperature = chat, backend, temperature

    def generate(
        self, contexts: list[list[int]], slots: list[int], sampling: SamplingConfig, seed: int
    ) -> list[Generated]:
        out = []
        for context in contexts:
            text = self.chat.tokenizer.decode(context, skip_special_tokens=False)
            messages = [
                {"role": "user" if role == "tool" else role, "content": body.strip()}
                for role, body in self.chat.markers.turns(text)
            ]
            reply = self.backend.complete(
                [m for m in messages if m["content"]], temperature=self.temperature, seed=seed
            )
            ids = self.chat.render_sft_target(reply.strip())
            out.append(Generated(ids, [0.0] * len(ids), finished=True))
        return out

    def release(self, slots: list[int]) -> None:
        """Nothing to drop: each call sends the whole conversation."""
