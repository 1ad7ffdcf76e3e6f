"""Task categories of the SGCD paper (§3), derived from a task's gold action set.

* ``state_changing`` -- at least one WRITE tool (book, cancel, update, send certificate).
* ``transfer_only`` -- no WRITE tool; the agent must hand over to a human.
* ``information_only`` -- only READ/GENERIC tools (the agent looks up and answers).
* ``no_action`` -- no gold action at all (typically a request the policy forbids).

On the tau3-airline test split this gives 13 / 1 / 4 / 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

STATE_CHANGING = "state_changing"
INFORMATION_ONLY = "information_only"
TRANSFER_ONLY = "transfer_only"
NO_ACTION = "no_action"
CATEGORIES = (STATE_CHANGING, INFORMATION_ONLY, TRANSFER_ONLY, NO_ACTION)

TRANSFER_TOOL = "transfer_to_human_agents"


def task_category(gold_tool_names: Sequence[str], tool_types: Mapping[str, Enum | str]) -> str:
    """Category of a task from the names of its gold tool calls and each tool's type."""
    kinds = {getattr(tool_types[name], "value", tool_types[name]) for name in gold_tool_names}
    if "write" in kinds:
        return STATE_CHANGING
    if TRANSFER_TOOL in gold_tool_names:
        return TRANSFER_ONLY
    if gold_tool_names:
        return INFORMATION_ONLY
    return NO_ACTION
