"""tau3-airline as a Gymnasium env (registered as ``toolgym/tau3-airline-v0``)."""

from __future__ import annotations

from typing import Any

from envs.tau3_airline.tasks import tau3_airline_domain
from envs.tau_env import TauEnv
from envs.users import UserSimulator


class Tau3AirlineEnv(TauEnv):
    """Customer service for an airline: 14 tools, a written policy, a simulated customer."""

    def __init__(self, user: UserSimulator | None = None, **options: Any):
        """``options``: the fields of :class:`envs.tau_env.TauEnvConfig`."""
        super().__init__(tau3_airline_domain(), user=user, **options)
