"""tau2-retail as a Gymnasium env (registered as ``toolgym/tau2-retail-v0``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envs.tau2_retail.tasks import tau2_retail_domain
from envs.tau_env import TauEnv, TauEnvConfig
from envs.users import UserSimulator


@dataclass(frozen=True)
class Tau2RetailConfig(TauEnvConfig):
    """tau3-airline's budgets (SGCD paper, Table 4) except the observation limit."""

    max_observation_chars: int = 4000
    """Retail results are long: order details ~1,200 chars, product details (every variant)
    up to 3,370 in gold episodes. The paper's 512 would hide the item and variant ids a
    task needs, so the limit fits every tool result of every gold episode."""


class Tau2RetailEnv(TauEnv):
    """Customer service for an online shop: 15 tools (find users, orders and products;
    cancel, modify, return or exchange orders), a written policy, a simulated customer."""

    config_class = Tau2RetailConfig

    def __init__(self, user: UserSimulator | None = None, **options: Any):
        """``options``: the fields of :class:`Tau2RetailConfig`."""
        super().__init__(tau2_retail_domain(), user=user, **options)
