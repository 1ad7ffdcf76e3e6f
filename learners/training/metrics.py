"""Episode-level diagnostics, keyed ``<prefix>/...``: success by category, the evaluator's
reward components, tool use, the paper's zero-tool audit, group health. Shared by training
steps and held-out evaluation."""

from __future__ import annotations

from collections import defaultdict

from agents.episode import EpisodeGroup
from agents.tool_format import OPEN
from envs.appworld.metrics import SCENARIO_FACET, goal_completion
from envs.categories import INFORMATION_ONLY


def episode_metrics(groups: list[EpisodeGroup], prefix: str) -> dict[str, float]:
    episodes = [e for g in groups for e in g.episodes]
    if not episodes:
        return {}
    m: dict[str, float] = {f"{prefix}/success": sum(e.success for e in episodes) / len(episodes)}
    by_category: dict[str, list[bool]] = defaultdict(list)
    for e in episodes:
        by_category[e.category].append(e.success)
    for category, wins in sorted(by_category.items()):
        m[f"{prefix}/{category}/success"] = sum(wins) / len(wins)
        m[f"{prefix}/{category}/episodes"] = len(wins)
    # mean of each evaluator component (tau: db, communicate): which check episodes miss
    for name in sorted({name for e in episodes for name in e.reward_components}):
        values = [e.reward_components[name] for e in episodes if name in e.reward_components]
        m[f"{prefix}/reward/{name}"] = sum(values) / len(values)
    turns = [t for e in episodes for t in e.assistant_turns()]
    m[f"{prefix}/tool_call_rate"] = sum(bool(t.tool_calls) for t in turns) / max(len(turns), 1)
    m[f"{prefix}/malformed_rate"] = sum(OPEN in t.text and not t.tool_calls for t in turns) / max(
        len(turns), 1
    )
    # episodes the env's machinery failed (dead servers): not trained on
    m[f"{prefix}/env_failures"] = sum(e.env_failed for e in episodes)
    m[f"{prefix}/tools_per_episode"] = sum(len(e.tool_calls) for e in episodes) / len(episodes)
    wins = [e for e in episodes if e.success]
    m[f"{prefix}/tools_per_success"] = sum(len(e.tool_calls) for e in wins) / max(len(wins), 1)
    # zero-tool audit (paper §3): information-only successes that called no tool
    info_wins = [e for e in wins if e.category == INFORMATION_ONLY]
    if info_wins:
        m[f"{prefix}/zero_tool_share"] = sum(not e.tool_calls for e in info_wins) / len(info_wins)
    n_groups = len(groups)
    mixed = sum(g.is_mixed for g in groups)
    all_pass = sum(all(e.success for e in g.episodes) for g in groups)
    m[f"{prefix}/groups_mixed"] = mixed / n_groups
    m[f"{prefix}/groups_all_pass"] = all_pass / n_groups
    m[f"{prefix}/groups_all_fail"] = (n_groups - mixed - all_pass) / n_groups
    return m


def goal_completion_metrics(groups: list[EpisodeGroup], prefix: str) -> dict[str, float]:
    """AppWorld's TGC and SGC (percent) of a pass@1 evaluation (one group per task, its
    first episode scored), for episodes with a ``scenario`` facet; empty otherwise."""
    firsts = [g.episodes[0] for g in groups if g.episodes]
    if not firsts or not all(e.facets.get(SCENARIO_FACET) for e in firsts):
        return {}
    scenario_of = {e.task_id: e.facets[SCENARIO_FACET][0] for e in firsts}
    completion = goal_completion(
        {e.task_id: e.success for e in firsts}, list(scenario_of), scenario_of.__getitem__
    )
    return {f"{prefix}/tgc": completion.tgc, f"{prefix}/sgc": completion.sgc}
