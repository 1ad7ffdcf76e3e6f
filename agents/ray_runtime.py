"""Starting Ray: a local instance by default, a cluster when an address is given."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RayConfig:
    address: str | None = None
    """None starts a local Ray; ``ray://host:10001`` or ``auto`` joins a cluster."""
    num_cpus: int | None = None
    """CPUs of a local instance (None: all)."""
    num_cpus_per_env: float = 1.0
    """CPUs reserved by each env actor (an equal share when the cluster has fewer than the
    pool needs: :func:`agents.env_pool.actor_cpus`)."""


def init_ray(config: RayConfig) -> None:
    # A local instance stays on loopback, without token auth or usage reporting
    # (shared/FACTS.md: Ray 2.60 otherwise binds the external interface). Ray reads these
    # when it is imported: set them first.
    for key, value in {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return
    if config.address is None:
        ray.init(num_cpus=config.num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=config.address)
