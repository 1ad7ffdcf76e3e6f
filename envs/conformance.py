"""Conformance checks every toolgym benchmark must pass (after Gymnasium's ``env_checker``).

Each ``check_*`` takes a factory that builds a fresh env (``make_env() -> ToolUseEnv``) and
raises ``AssertionError`` with a message that says what to fix. ``run_all`` runs them in
order. A new benchmark is done when ``tests/envs/test_conformance.py`` passes for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from envs.core import FINAL_INFO_KEYS, STEP_INFO_KEYS, AgentAction, TaskLabels, ToolCall, ToolUseEnv

EnvFactory = Callable[[], ToolUseEnv]
STOP_ACTION = AgentAction(content="###STOP###")


def _first_task(env: ToolUseEnv) -> str:
    tasks = env.tasks()
    assert tasks, f"{type(env).__name__}.tasks() is empty: the env's split has no tasks"
    return tasks[0].task_id


def check_spaces_and_info(make_env: EnvFactory) -> None:
    env = make_env()
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs), (
        f"reset() observation does not fit observation_space: {str(obs)[:200]}"
    )
    assert obs["tools"], "reset() must put the tool schemas in obs['tools']"
    missing = [k for k in STEP_INFO_KEYS if k not in info]
    assert not missing, f"reset() info lacks {missing} (see envs.core.STEP_INFO_KEYS)"
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs), "step() observation does not fit observation_space"
    assert not obs["tools"], "step() must leave obs['tools'] empty (schemas come once, on reset)"
    assert isinstance(reward, float), f"reward must be a float, got {type(reward).__name__}"
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    missing = [k for k in STEP_INFO_KEYS if k not in info]
    assert not missing, f"step() info lacks {missing}"
    env.close()


def check_seeded_reset(make_env: EnvFactory) -> None:
    a, b = make_env(), make_env()
    for seed in (0, 1, 7):
        obs_a, info_a = a.reset(seed=seed)
        obs_b, info_b = b.reset(seed=seed)
        assert info_a["task_id"] == info_b["task_id"], (
            f"reset(seed={seed}) picked tasks {info_a['task_id']} and {info_b['task_id']}: "
            "draw the task from self.np_random"
        )
        assert obs_a == obs_b, f"reset(seed={seed}) gave two different observations"


def check_step_determinism(make_env: EnvFactory) -> None:
    a, b = make_env(), make_env()
    task_id = _first_task(a)
    a.reset(seed=3, options={"task_id": task_id})
    b.reset(seed=3, options={"task_id": task_id})
    for action in a.gold_actions(task_id):
        out_a, out_b = a.step(action), b.step(action)
        assert out_a[:4] == out_b[:4], (
            f"the same action from the same state gave different results: {action}"
        )


def check_final_info(make_env: EnvFactory) -> None:
    env = make_env()
    env.reset(seed=0, options={"task_id": _first_task(env)})
    _, reward, terminated, truncated, info = env.step(STOP_ACTION)
    assert terminated or truncated, "an agent stop message (###STOP###) must end the episode"
    missing = [k for k in FINAL_INFO_KEYS if k not in info]
    assert not missing, f"the final step's info lacks {missing} (see envs.core.FINAL_INFO_KEYS)"
    assert 0.0 <= reward <= 1.0, f"final reward {reward} outside [0, 1]"


def check_bad_input(make_env: EnvFactory) -> None:
    """Malformed calls, unknown tools, bad arguments, over-long and empty messages are
    observations with an error, counted in info, and the episode goes on."""
    env = make_env()
    obs, info = env.reset(seed=0, options={"task_id": _first_task(env)})
    tool = obs["tools"][0]["function"]["name"]
    bad_actions = {
        "malformed tool call": AgentAction(malformed=('{"name": "x", "arguments": [1',)),
        "unknown tool": AgentAction(tool_calls=(ToolCall("no_such_tool_xyz", {}),)),
        "bad arguments": AgentAction(tool_calls=(ToolCall(tool, {"no_such_argument": [1]}),)),
        "over-long message": AgentAction(content="x" * (env.max_action_chars + 1)),
        "empty message": AgentAction(content="   "),
    }
    for what, action in bad_actions.items():
        before = info["tool_errors"] + info["invalid_actions"]
        obs, _, terminated, truncated, info = env.step(action)
        assert not (terminated or truncated), f"a {what} ended the episode; it must not"
        texts = " ".join(m["content"] for m in obs["messages"])
        assert "error" in texts.lower(), (
            f"a {what} must come back as an error observation: {texts[:200]}"
        )
        after = info["tool_errors"] + info["invalid_actions"]
        assert after == before + 1, (
            f"a {what} must be counted in info['tool_errors'|'invalid_actions']"
        )


def check_reset_isolation(make_env: EnvFactory, task_id: str) -> None:
    """State written in one episode must not leak into the next."""
    env = make_env()
    env.reset(seed=0, options={"task_id": task_id})
    fresh = env.state_hash()
    for action in env.gold_actions(task_id):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    assert env.state_hash() != fresh, (
        f"gold actions of task {task_id} changed no state: pick a writing task"
    )
    env.reset(seed=0, options={"task_id": task_id})
    assert env.state_hash() == fresh, "state from the previous episode leaked into reset()"


def check_gold_replay(make_env: EnvFactory, task_ids: Sequence[str]) -> dict[str, float]:
    """Every task's gold actions, with the scripted user, score 1.0 by the env's evaluator."""
    env = make_env()
    rewards = {}
    for task_id in task_ids:
        env.reset(seed=0, options={"task_id": task_id})
        reward, ended = 0.0, False
        for action in env.gold_actions(task_id):
            _, reward, terminated, truncated, info = env.step(action)
            ended = terminated or truncated
            if ended:
                break
        assert ended, f"task {task_id}: the gold replay did not end the episode"
        rewards[task_id] = reward
    failed = {t: r for t, r in rewards.items() if r != 1.0}
    assert not failed, f"gold replay scored below 1.0 on tasks {failed}"
    return rewards


def _call_key(call: ToolCall) -> tuple[str, str]:
    return call.name, json.dumps(call.arguments, sort_keys=True, default=str)


def check_task_labels(make_env: EnvFactory, task_ids: Sequence[str]) -> None:
    """Every task declares its ground truth in ``task_labels``: at least every tool call
    its gold actions make, and its answers as non-empty strings. What is declared is what
    SGCD's sanitizer masks before an external analyst reads a trace, and what GEAR's
    teacher is shown; a label left out reaches the analyst in the clear."""
    env = make_env()
    for task_id in task_ids:
        labels = env.task_labels(task_id)
        assert isinstance(labels, TaskLabels), (
            f"task {task_id}: task_labels() must return envs.core.TaskLabels, "
            f"got {type(labels).__name__}"
        )
        declared = {_call_key(c) for c in labels.gold_calls}
        missing = [
            c.name
            for a in env.gold_actions(task_id)
            for c in a.tool_calls
            if _call_key(c) not in declared
        ]
        assert not missing, (
            f"task {task_id}: task_labels() leaves out gold calls {missing[:5]}: declare "
            "every gold call (and the task's answers) so the sanitizer can mask them"
        )
        bad = [a for a in labels.answers if not isinstance(a, str) or not a]
        assert not bad, f"task {task_id}: answers must be non-empty strings, got {bad[:5]}"


def check_double_close(make_env: EnvFactory) -> None:
    env = make_env()
    env.reset(seed=0)
    env.close()
    env.close()


def run_all(make_env: EnvFactory, writing_task: str, replay_tasks: Sequence[str]) -> None:
    check_spaces_and_info(make_env)
    check_seeded_reset(make_env)
    check_step_determinism(make_env)
    check_final_info(make_env)
    check_bad_input(make_env)
    check_reset_isolation(make_env, writing_task)
    check_gold_replay(make_env, replay_tasks)
    check_task_labels(make_env, replay_tasks)
    check_double_close(make_env)
