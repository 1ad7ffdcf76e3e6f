"""Episode scoring equal to tau2's ``evaluate_simulation`` (``EvaluationType.ALL``), minus
its two world rebuilds.

tau2's DB check builds two fresh worlds per episode and compares their hashes: a *gold* one
that runs the task's gold actions, and a *predicted* one that replays the trajectory's tool
calls (raising if a result differs from the recorded one). Here:

- the gold hashes depend on the task alone, so they are computed once per task the way tau2
  computes them, and kept on the domain; an episode that made the gold solution's writing
  calls, in order, ended in the gold world, so its hashes are the gold ones (a gold replay
  builds no second world);
- the predicted world is the episode's own world: built by the same constructor, it ran
  exactly the trajectory's tool calls through ``get_response``, as the replay does, and the
  recorded results came from it, so the replay would rebuild the same state and pass. When
  every call was to a READ or GENERIC tool, its hashes are a fresh world's, computed once:
  tau2's tool markers say those leave the DB alone (the tests check it for these domains);
- the action and communicate checks are tau2's own evaluators, and the reward and breakdown
  are combined as ``evaluate_simulation`` combines them.

The returned ``RewardInfo`` equals tau2's field for field (tests/envs/test_tau2_scoring.py).
Whatever this shortcut does not cover goes to tau2's evaluator unchanged: early terminations
and tasks without criteria (tau2 answers those without building a world), and tasks with an
initial state, env assertions or NL assertions.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tau2.data_model.message import Message
    from tau2.data_model.simulation import RewardInfo, TerminationReason
    from tau2.data_model.tasks import Task
    from tau2.environment.environment import Environment

    from envs.tau2_engine import TauDomain


def score_episode(
    domain: TauDomain,
    task_id: str,
    world: Environment,
    messages: list[Message],
    termination: TerminationReason,
) -> RewardInfo:
    """tau2's reward for an episode of ``domain``'s task ``task_id``.

    ``world`` must come from ``domain.build_environment()`` and have run exactly the tool
    calls in ``messages`` (each through ``world.get_response``), as a ``TauEnv`` episode does
    (whose calls before its first writing one run on the domain's pristine world: the same
    state).
    """
    from tau2.data_model.simulation import RewardInfo, TerminationReason

    task = domain.tasks[task_id]
    if termination not in {TerminationReason.AGENT_STOP, TerminationReason.USER_STOP}:
        # tau2's first rule, written here: importing its evaluator costs seconds (litellm)
        note = f"Simulation terminated prematurely. Termination reason: {termination.value}"
        return RewardInfo(reward=0.0, reward_basis=None, info={"note": note})
    if _needs_tau2(task):
        return tau2_evaluate(domain, task, messages, termination)
    return _combine(task, _db_reward(domain, task, world, messages), messages)


def summary(result: RewardInfo) -> dict[str, Any]:
    """What an episode's ``info`` reports of a ``RewardInfo``: the reward components and
    the action and communicate check counts."""
    actions = result.action_checks or []
    communicate = result.communicate_checks or []
    return {
        "reward_components": {
            getattr(k, "value", str(k)).lower(): float(v)
            for k, v in (result.reward_breakdown or {}).items()
        },
        "action_checks": {"matched": sum(c.action_match for c in actions), "total": len(actions)},
        "communicate_checks": {
            "met": sum(c.met for c in communicate),
            "total": len(communicate),
        },
    }


def tau2_evaluate(
    domain: TauDomain, task: Task, messages: list[Message], termination: TerminationReason
) -> RewardInfo:
    """tau2's own ``evaluate_simulation`` (the reference: it rebuilds both worlds)."""
    from tau2.data_model.simulation import SimulationRun
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    domain.register_with_tau2()
    now = datetime.now().isoformat()  # the evaluator reads neither the times nor the id
    run = SimulationRun(
        id=str(uuid.uuid4()),
        task_id=task.id,
        start_time=now,
        end_time=now,
        duration=0.0,
        termination_reason=termination,
        messages=messages,
    )
    return evaluate_simulation(
        simulation=run,
        task=task,
        evaluation_type=EvaluationType.ALL,
        solo_mode=False,
        domain=domain.name,
    )


def _needs_tau2(task: Task) -> bool:
    # An initial state changes both worlds (episode worlds start from the plain DB); env
    # assertions are left to tau2's replayed world; NL assertions make tau2 raise under ALL.
    from tau2.data_model.tasks import RewardType

    criteria = task.evaluation_criteria
    return (
        criteria is None
        or task.initial_state is not None
        or bool(criteria.env_assertions)
        or RewardType.NL_ASSERTION in criteria.reward_basis
    )


def _db_reward(
    domain: TauDomain, task: Task, world: Environment, messages: list[Message]
) -> RewardInfo:
    """``EnvironmentEvaluator.calculate_reward`` for a task without initial state or env
    assertions, on the episode's world and the cached gold hashes."""
    from tau2.data_model.simulation import DBCheck, RewardInfo
    from tau2.data_model.tasks import RewardType

    criteria = task.evaluation_criteria
    if criteria.actions is None and criteria.env_assertions is None:
        return RewardInfo(
            reward=1.0,
            db_check=DBCheck(db_match=True, db_reward=1.0),
            info={"note": "No expected actions or env assertions"},
        )
    predicted = _predicted_hashes(domain, world, messages)
    if task.id not in domain.gold_hashes and _writes_as_gold(domain, task, world, messages):
        domain.gold_hashes[task.id] = predicted
    match = gold_hashes(domain, task.id) == predicted
    db_reward = 1.0 if match else 0.0
    breakdown = {}
    if RewardType.DB in criteria.reward_basis:
        breakdown[RewardType.DB] = db_reward
    if RewardType.ENV_ASSERTION in criteria.reward_basis:
        breakdown[RewardType.ENV_ASSERTION] = 1.0  # the product over no assertions
    return RewardInfo(
        reward=db_reward if RewardType.DB in criteria.reward_basis else 1.0,
        db_check=DBCheck(db_match=match, db_reward=db_reward),
        env_assertions=[],
        reward_basis=criteria.reward_basis,
        reward_breakdown=breakdown,
    )


def _writes_as_gold(
    domain: TauDomain, task: Task, world: Environment, messages: list[Message]
) -> bool:
    """Whether the episode's world is the task's gold world: both start fresh and receive
    the same calls that may write, in the same order, arguments equal as JSON (a call that
    only reads changes nothing; a failing one fails alike in both). Not for a world that
    syncs its tools after each call (tau2's replay syncs, its gold world does not)."""
    from tau2.environment.environment import Environment

    if type(world).sync_tools is not Environment.sync_tools:
        return False
    episode = [
        (c.name, c.requestor, c.arguments)
        for c in _tool_calls(messages)
        if not domain.leaves_db_alone(c.name)
    ]
    gold = [
        (a.name, a.requestor, a.arguments)
        for a in task.evaluation_criteria.actions or []
        if not domain.leaves_db_alone(a.name)
    ]
    return json.dumps(episode, sort_keys=True) == json.dumps(gold, sort_keys=True)


def _tool_calls(messages: list[Message]) -> list:
    from tau2.data_model.message import AssistantMessage, UserMessage

    return [
        c
        for m in messages
        if isinstance(m, AssistantMessage | UserMessage) and m.is_tool_call()
        for c in m.tool_calls
    ]


def _predicted_hashes(
    domain: TauDomain, world: Environment, messages: list[Message]
) -> tuple[str | None, str | None]:
    """The (agent, user) DB hashes of tau2's replayed world: the episode world's, or, when
    no call could write, a fresh world's (hashing the DB is most of the cost)."""
    if all(domain.leaves_db_alone(c.name) for c in _tool_calls(messages)):
        if domain.fresh_hashes is None:
            domain.fresh_hashes = _hashes(domain.pristine_world())
        return domain.fresh_hashes
    return _hashes(world)


def _hashes(world: Environment) -> tuple[str | None, str | None]:
    world.sync_tools()  # the replay's last step (a no-op in most domains)
    return world.get_db_hash(), world.get_user_db_hash()


def gold_hashes(domain: TauDomain, task_id: str) -> tuple[str | None, str | None]:
    """The (agent, user) DB hashes of the task's gold world, as tau2 builds it: a fresh
    world, then every gold action, a failing one skipped. Computed once per process."""
    if task_id not in domain.gold_hashes:
        gold = domain.build_environment()
        gold.set_state(initialization_data=None, initialization_actions=None, message_history=[])
        for action in domain.tasks[task_id].evaluation_criteria.actions or []:
            with contextlib.suppress(Exception):  # tau2 logs a warning and goes on
                gold.make_tool_call(
                    tool_name=action.name, requestor=action.requestor, **action.arguments
                )
        domain.gold_hashes[task_id] = (gold.get_db_hash(), gold.get_user_db_hash())
    return domain.gold_hashes[task_id]


def _combine(task: Task, env: RewardInfo, messages: list[Message]) -> RewardInfo:
    """``evaluate_simulation``'s combination for ``EvaluationType.ALL``, without NL
    assertions (a task that rewards them goes to tau2, which raises)."""
    from tau2.data_model.simulation import RewardInfo
    from tau2.data_model.tasks import RewardType
    from tau2.evaluator.evaluator_action import ActionEvaluator
    from tau2.evaluator.evaluator_communicate import CommunicateEvaluator

    action = ActionEvaluator.calculate_reward(task=task, full_trajectory=messages)
    communicate = CommunicateEvaluator.calculate_reward(task=task, full_trajectory=messages)
    basis = set(task.evaluation_criteria.reward_basis)
    reward, breakdown = 1.0, {}
    for bases, part in (
        ({RewardType.DB, RewardType.ENV_ASSERTION}, env),
        ({RewardType.ACTION}, action),
        ({RewardType.COMMUNICATE}, communicate),
    ):
        if basis & bases:
            breakdown.update(part.reward_breakdown or {})
            reward *= part.reward
    return RewardInfo(
        reward=reward,
        db_check=env.db_check,
        env_assertions=env.env_assertions,
        action_checks=action.action_checks,
        nl_assertions=None,
        communicate_checks=communicate.communicate_checks,
        reward_basis=task.evaluation_criteria.reward_basis,
        reward_breakdown=breakdown,
        info={
            "env": env.info,
            "nl": None,
            "communicate": communicate.info,
            "action": action.info,
        },
    )
