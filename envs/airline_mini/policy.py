"""The small domain's written policy, and the cancellation rule the task generator applies.

Both live here so the rule the agent reads and the rule that decides a task's gold
actions cannot drift apart. The policy keeps to what a 135M model can learn: one rule for
cancellations (two conditions a single tool result shows), one for transfers.
"""

from __future__ import annotations

from typing import Any

TODAY = "2024-05-15"  # tau2's airline clock (AirlineTools._get_datetime): 2024-05-15T15:00
NOW = f"{TODAY} 15:00 EST"
CANCELLABLE_CABIN = "business"
INSURED = "yes"

POLICY = f"""\
# Airline agent policy

You are a customer service agent for an airline. The current time is {NOW}.

You can look up a user or a reservation, cancel a reservation, and transfer the user to a \
human agent. Take ids and values only from the user or from tool results; never make them \
up. Finish the request with tool calls before you reply, then reply once with the outcome.

## Questions
Look up the reservation or the user, then answer with the exact value from the tool result.

## Cancellation
Look up the reservation first. Cancel it only if its cabin is "{CANCELLABLE_CABIN}" or its \
insurance is "{INSURED}". Otherwise do not cancel and do not transfer: tell the user that \
the policy does not allow the cancellation.

## Other requests
You cannot change flights, passengers or baggage, or book a trip. For such a request, or \
when the user asks for a human agent, call transfer_to_human_agents with a one-sentence \
summary, then tell the user they are being transferred.
"""


def cancellation_allowed(reservation: dict[str, Any]) -> bool:
    """The policy's cancellation rule applied to a reservation record of the airline DB."""
    return reservation["cabin"] == CANCELLABLE_CABIN or reservation["insurance"] == INSURED


# What the gold demonstration answers to a cancellation the rule forbids.
REFUSAL = (
    "I cannot cancel this reservation: the policy allows a cancellation only for a "
    f'"{CANCELLABLE_CABIN}" cabin or with insurance "{INSURED}".'
)
