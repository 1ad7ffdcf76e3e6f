"""Episode-level diagnostics on hand-built episode records with known answers: success by
category, the zero-tool audit, tool use, group health and evaluator components."""

import pytest

from agents.episode import Episode, EpisodeGroup, Turn
from learners.training.metrics import episode_metrics, goal_completion_metrics


def episode(task, category, reward, tools=(), components=None, texts=("ok",)):
    turns = [Turn("assistant", i, i + 1, text) for i, text in enumerate(texts)]
    turns[0].tool_calls = list(tools)
    n = len(turns)
    return Episode(
        task_id=task,
        category=category,
        ids=list(range(n)),
        response_mask=[1] * n,
        logprobs=[0.0] * n,
        turns=turns,
        reward=reward,
        reward_components=components or {},
        tool_calls=list(tools),
    )


def group(*episodes):
    return EpisodeGroup(episodes[0].task_id, episodes[0].category, [0], list(episodes))


@pytest.fixture
def metrics():
    groups = [
        # information_only, mixed: one win with a look-up, one win with no tool, one loss
        group(
            episode("a", "information_only", 1.0, ["get_user"], {"db": 1, "communicate": 1}),
            episode("a", "information_only", 1.0, [], {"db": 1, "communicate": 1}),
            episode("a", "information_only", 0.0, [], {"db": 1, "communicate": 0}),
        ),
        # state_changing, all fail: two on the DB only, one on the DB and communicate
        group(
            episode("b", "state_changing", 0.0, ["get_user"], {"db": 0, "communicate": 1}),
            episode("b", "state_changing", 0.0, [], {"db": 0, "communicate": 1}),
            episode("b", "state_changing", 0.0, [], {"db": 0, "communicate": 0}),
        ),
        # no_action, all pass with no tool (not information-only: outside the audit)
        group(*[episode("c", "no_action", 1.0, [], {"db": 1, "communicate": 1})] * 3),
        # information_only, all pass, two and three tool calls; a malformed call in text
        group(
            episode("d", "information_only", 1.0, ["get_user", "get_res"]),
            episode("d", "information_only", 1.0, ["get_user", "get_res", "get_res"]),
            episode(
                "d", "information_only", 1.0, ["get_user", "get_res"], texts=("a", "<tool_call>x")
            ),
        ),
    ]
    return episode_metrics(groups, "eval")


def test_success_overall_and_by_category(metrics):
    assert metrics["eval/success"] == pytest.approx(8 / 12)
    assert metrics["eval/information_only/success"] == pytest.approx(5 / 6)
    assert metrics["eval/information_only/episodes"] == 6
    assert metrics["eval/state_changing/success"] == 0.0
    assert metrics["eval/no_action/success"] == 1.0
    assert "eval/transfer_only/success" not in metrics


def test_zero_tool_audit_counts_information_only_successes(metrics):
    # information-only wins: a1 (1 tool), a2 (none), d1-d3 (2, 3, 2 tools) -> 1 of 5
    assert metrics["eval/zero_tool_share"] == pytest.approx(1 / 5)
    # every win: a1 1, a2 0, c 0 0 0, d 2 3 2 -> 8 tools over 8 wins
    assert metrics["eval/tools_per_success"] == pytest.approx(8 / 8)
    # all episodes: a 1 0 0, b 1 0 0, c 0 0 0, d 2 3 2 -> 9 tools over 12
    assert metrics["eval/tools_per_episode"] == pytest.approx(9 / 12)


def test_tool_call_and_malformed_rates_per_assistant_message(metrics):
    # 13 assistant messages: 5 with a parsed call (a1, b1, d1-d3 first turns), 1 malformed
    assert metrics["eval/tool_call_rate"] == pytest.approx(5 / 13)
    assert metrics["eval/malformed_rate"] == pytest.approx(1 / 13)


def test_group_health(metrics):
    assert metrics["eval/groups_mixed"] == 0.25
    assert metrics["eval/groups_all_fail"] == 0.25
    assert metrics["eval/groups_all_pass"] == 0.5


def test_evaluator_components_average_over_the_episodes_that_report_them(metrics):
    # d's episodes report none; over a, b, c (9 episodes): db 3+0+3, communicate 2+2+3
    assert metrics["eval/reward/db"] == pytest.approx(6 / 9)
    assert metrics["eval/reward/communicate"] == pytest.approx(7 / 9)


def test_no_information_only_success_leaves_the_audit_out():
    m = episode_metrics([group(episode("b", "state_changing", 1.0, ["cancel"]))], "rollout")
    assert "rollout/zero_tool_share" not in m and m["rollout/tools_per_success"] == 1.0
    assert episode_metrics([], "rollout") == {}


def test_goal_completion_of_a_pass1_evaluation_by_scenario_facet():
    def appworld(task, reward):
        e = episode(task, "difficulty_1", reward)
        e.facets = {"app": ["spotify"], "scenario": [task.split("_")[0]]}
        return group(e)

    # scenario a: 2 of 2 pass, b: 1 of 2 -> TGC 3/4, SGC 1/2
    groups = [
        appworld("a_1", 1.0),
        appworld("a_2", 1.0),
        appworld("b_1", 1.0),
        appworld("b_2", 0.0),
    ]
    assert goal_completion_metrics(groups, "eval") == {"eval/tgc": 75.0, "eval/sgc": 50.0}
    tau = [group(episode("x", "no_action", 1.0))]
    assert goal_completion_metrics(tau, "eval") == {}  # no scenario facet


def test_env_failed_episodes_are_counted_and_their_groups_never_trained_on():
    from dataclasses import replace

    from learners.training.train import signal_groups

    win, loss = episode("a", "state_changing", 1.0), episode("a", "state_changing", 0.0)
    dead = replace(loss, termination_reason="env_failure")
    healthy, crashed = group(win, loss), group(win, dead)
    also_fail = group(loss, loss)
    assert crashed.is_mixed and crashed.env_failed and not healthy.env_failed
    assert episode_metrics([healthy, crashed], "rollout")["rollout/env_failures"] == 1
    assert signal_groups([healthy, crashed, also_fail], dynamic_sampling=True) == [healthy]
    assert signal_groups([healthy, crashed, also_fail], dynamic_sampling=False) == [
        healthy,
        also_fail,
    ]
