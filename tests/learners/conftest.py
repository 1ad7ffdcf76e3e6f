import pytest
import torch

from agents.chat_format import ChatFormat, ChatFormatConfig
from agents.env_pool import EnvSpec, LocalEnvPool
from agents.generation import ScriptedGenerator
from agents.model import ModelConfig, load_model
from agents.rollout import Policy, RolloutConfig, rollout_groups
from agents.tool_format import format_action
from credit.task_prompts import ChatTaskPrompts
from credit.teacher import Teacher


@pytest.fixture()
def tiny_fresh():
    """A fresh tiny random Llama (tests that train it must not share it)."""
    return load_model(ModelConfig(name="tiny-random", dtype="float32"))


@pytest.fixture(scope="session")
def tiny_chat():
    _, tokenizer = load_model(ModelConfig(name="tiny-random", dtype="float32"))
    return ChatFormat(tokenizer, ChatFormatConfig())


SPEC = EnvSpec({"name": "airline_mini", "split": "train"})
TASK = "6"  # a cancellation the policy allows: gold replay wins, "Sorry." fails


class FixedAnalyst:
    """Stands in for the external credit LLM (a real one needs a network)."""

    model = "fixed-analyst"
    supports_temperature = True

    def complete(self, messages, *, temperature, seed):
        return "Step 1: look up the reservation. Step 2: cancel it only if the policy allows."


@pytest.fixture(scope="module")
def setup(tiny_chat):
    """A tiny model, a mixed airline_mini group [win, fail, win, fail] with slightly
    off-policy behaviour log-probs, and a teacher with a fixed analyst."""
    torch.manual_seed(0)
    model, _ = load_model(ModelConfig(name="tiny-random", dtype="float32"))
    env = SPEC.build()
    win = [format_action(a) for a in env.gold_actions(TASK)]
    scripts = {0: win, 1: ["Sorry."], 2: win, 3: ["Sorry, I cannot do that."]}
    policy = Policy(tiny_chat, ScriptedGenerator(tiny_chat.render_sft_target, scripts))
    (group,) = rollout_groups(LocalEnvPool(SPEC, 4), policy, [TASK], 0, RolloutConfig(n=4))
    assert group.is_mixed and group.rewards == [1.0, 0.0, 1.0, 0.0]
    # behaviour log-probs a little off-policy, so that the clip is active somewhere
    g = torch.Generator().manual_seed(1)
    for e in group.episodes:
        e.logprobs = [
            lp - 0.5 * float(torch.rand(1, generator=g)) if m else 0.0
            for lp, m in zip(e.logprobs, e.response_mask, strict=True)
        ]
    prompts = ChatTaskPrompts(tiny_chat, env.task_labels, "Reference:")
    teacher = Teacher(model=model, prompts=prompts, analyst=FixedAnalyst())
    return model, group, teacher
