"""The four airline tools the small domain exposes, taken unchanged from tau2's AirlineTools.

tau2's ``ToolKitType`` metaclass gives every toolkit class a ``_func_tools`` property that
merges the ``@is_tool`` methods of the class with those of its bases, so a plain subclass
of ``AirlineTools`` still offers all 14 tools. Every way tau2 reaches a tool (``tools``,
``get_tools``, ``use_tool``, ``has_tool``, ``tool_type``; the evaluator's re-run goes through
``use_tool``) reads the ``tools`` property, so narrowing that one property narrows them all.
"""

from __future__ import annotations

from collections.abc import Callable

from tau2.domains.airline.tools import AirlineTools

TOOL_NAMES = (
    "get_user_details",
    "get_reservation_details",
    "cancel_reservation",
    "transfer_to_human_agents",
)


class MiniAirlineTools(AirlineTools):
    """``AirlineTools`` restricted to :data:`TOOL_NAMES`; any other tool is "not found"."""

    @property
    def tools(self) -> dict[str, Callable]:
        return {name: getattr(self, name) for name in TOOL_NAMES}
