"""The chat format follows each tokenizer's own template, token-in/token-out: with four
real templates (SmolLM2's ChatML, Llama 3.1, Qwen2.5, Qwen3) a gold replay through the
rollout scores 1, its response mask covers exactly the sampled ids, and its ids are the
ids of the template rendering the whole conversation."""

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from agents.chat_format import ChatFormat, ChatFormatConfig
from agents.env_pool import EnvSpec, LocalEnvPool
from agents.generation import ScriptedGenerator
from agents.model import ModelConfig, load_tokenizer
from agents.rollout import Policy, RolloutConfig, rollout_groups
from agents.tool_format import format_action
from credit.task_prompts import ChatTaskPrompts

# built by `make test` from PyPI (tests/agents/chat_templates.py)
TEMPLATES = Path(__file__).resolve().parents[2] / ".cache" / "chat-templates"
SPEC = EnvSpec({"name": "tau3_airline", "split": "test"})
TASK = "8"  # a state-changing test task with several tool calls
# Qwen3's template writes an empty reasoning block into assistant turns after the last
# user message when it renders a whole chat; a model continuing an episode writes its own
QWEN3_EMPTY_THINK = "<think>\n\n</think>\n\n"


def _tokenizer(name):
    if name == "smollm2":
        return load_tokenizer(ModelConfig(name="smollm2"))
    if not (TEMPLATES / "STAMP").exists():
        pytest.fail(f"no {TEMPLATES}: run `make {TEMPLATES.relative_to(Path.cwd())}/STAMP`")
    return AutoTokenizer.from_pretrained(TEMPLATES / name)


class RecordingChat(ChatFormat):
    """Keeps every observation it renders, to rebuild the conversation."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, ChatFormatConfig())
        self.observations = []

    def render_reset(self, observation):
        self.observations.append(observation)
        return super().render_reset(observation)

    def render_observation(self, observation):
        self.observations.append(observation)
        return super().render_observation(observation)


@pytest.fixture(scope="module", params=["smollm2", "llama3.1", "qwen2.5", "qwen3"])
def replay(request):
    chat = RecordingChat(_tokenizer(request.param))
    pool = LocalEnvPool(SPEC, 1)
    texts = [format_action(a) for a in pool.workers[0].env.gold_actions(TASK)]
    generator = ScriptedGenerator(chat.render_sft_target, {0: texts})
    # templates that render tools write their full JSON schemas (~4K tokens here)
    config = RolloutConfig(n=1, max_context_tokens=None)
    (group,) = rollout_groups(pool, Policy(chat, generator), [TASK], 0, config)
    pool.close()
    return request.param, chat, group, texts


def _conversation(chat, texts):
    """The chat as messages: the system message the policy saw, then the env's messages
    and the replayed assistant texts in turn."""
    reset, *replies = chat.observations
    policy = "\n".join(m["content"] for m in reset["messages"] if m["role"] == "system")
    messages = [{"role": "system", "content": chat.system_text(policy, reset["tools"])}]
    messages += [m for m in reset["messages"] if m["role"] != "system"]
    for text, observation in zip(texts, replies + [None], strict=True):
        messages.append({"role": "assistant", "content": text})
        messages += observation["messages"] if observation else []
    return messages, reset["tools"]


def test_a_gold_replay_scores_one_with_every_template(replay):
    _, _, group, texts = replay
    (episode,) = group.episodes
    assert episode.reward == 1.0
    assert len(episode.assistant_turns()) == len(texts) >= 3


def test_the_mask_covers_exactly_the_sampled_ids(replay):
    _, chat, group, texts = replay
    (episode,) = group.episodes
    sampled = [chat.render_sft_target(t) for t in texts]
    generated = [i for i, m in zip(episode.ids, episode.response_mask, strict=True) if m]
    assert generated == [i for ids in sampled for i in ids]
    for turn, ids in zip(episode.assistant_turns(), sampled, strict=True):
        assert episode.ids[turn.start : turn.end] == ids


def test_the_episode_is_the_templates_rendering_of_the_whole_chat(replay):
    name, chat, group, texts = replay
    messages, tools = _conversation(chat, texts)
    text = chat.tokenizer.apply_chat_template(
        messages, tools=tools if chat.template_renders_tools else None, tokenize=False
    )
    if name == "qwen3":
        text = text.replace(QWEN3_EMPTY_THINK, "")
    whole = chat.tokenizer(text, add_special_tokens=False).input_ids
    (episode,) = group.episodes
    ids = group.prompt_ids + episode.ids
    assert ids == whole[: len(ids)]
    # what is left is the rest of the last turn's end (ChatML's newline)
    assert chat.tokenizer.decode(whole[len(ids) :]) == chat.markers.end.removeprefix(
        chat.markers.end_token
    )


def test_turn_markers_read_the_episode_back(replay):
    """What teacher prompts and a chat backend read: the replies and the task's opening."""
    _, chat, group, texts = replay
    (episode,) = group.episodes
    decoded = chat.tokenizer.decode(group.prompt_ids + episode.ids, skip_special_tokens=False)
    replies = [body for role, body in chat.markers.turns(decoded) if role == "assistant"]
    assert replies == texts
    prompts = ChatTaskPrompts(chat, lambda task: None, "Reference")
    opening = [m["content"] for m in chat.observations[0]["messages"] if m["role"] == "user"]
    assert prompts.instruction(group).endswith(opening[-1].strip())
    teacher = prompts.teacher_prompt_ids(group, "context")
    assert chat.tokenizer.decode(teacher).endswith(
        chat.markers.block("system", "Reference\ncontext") + chat.markers.headers["assistant"]
    )
