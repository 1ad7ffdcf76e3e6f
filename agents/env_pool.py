"""Where a group's envs live: in this process, or as Ray actors (one per sibling slot).

Generation stays where the model is (the driver); only env work (tool calls, the user
simulator, the evaluator's ~0.7 s scoring) runs in the pool. Both pools build their envs
from the same :class:`EnvSpec`, so a Ray rollout equals a local one for a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from agents.chat import make_chat_backend
from envs.config import ConfigError
from envs.core import AgentAction, ToolUseEnv
from envs.factory import make_env, make_user

A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True)
class EnvSpec:
    """Everything needed to build an env in any process: its config and its user's."""

    env: dict[str, Any]
    user: dict[str, Any] = field(default_factory=lambda: {"kind": "scripted"})

    def build(self) -> ToolUseEnv:
        backend = make_chat_backend(self.user["backend"]) if "backend" in self.user else None
        return make_env(self.env, user=make_user(self.user, backend))


class EnvWorker:
    """One env slot. Also the Ray actor class (``ray.remote(EnvWorker)``)."""

    def __init__(self, spec: EnvSpec):
        self.env = spec.build()

    def reset(self, task_id: str, seed: int) -> tuple[dict, dict]:
        return self.env.reset(seed=seed, options={"task_id": task_id})

    def step(self, action: AgentAction) -> tuple[dict, float, bool, bool, dict]:
        return self.env.step(action)

    def tasks(self) -> list:
        return self.env.tasks()


class EnvPool(Protocol):
    size: int

    def reset(self, jobs: dict[int, tuple[str, int]]) -> dict[int, tuple[dict, dict]]:
        """Reset slot -> (task_id, seed); returns slot -> (observation, info)."""
        ...

    def step(self, actions: dict[int, AgentAction]) -> dict[int, tuple]:
        """Step slot -> action; returns slot -> gymnasium's 5-tuple."""
        ...

    def close(self) -> None: ...


class LocalEnvPool:
    """Env slots in this process.

    Envs that declare ``releases_gil`` (AppWorld: the work is in its servers) are reset and
    stepped concurrently, one thread per slot; the others one after another: tau2's tools
    and scoring are pure Python under the GIL: two threads measured slower than one there.
    Results come back in the order of the request either way.
    """

    def __init__(self, spec: EnvSpec, size: int):
        self.size = size
        self.workers = [EnvWorker(spec) for _ in range(size)]
        concurrent = size > 1 and self.workers[0].env.releases_gil
        self._threads = ThreadPoolExecutor(size, "env-slot") if concurrent else None

    def reset(self, jobs: dict[int, tuple[str, int]]) -> dict[int, tuple[dict, dict]]:
        return self._map(lambda s, job: self.workers[s].reset(*job), jobs)

    def step(self, actions: dict[int, AgentAction]) -> dict[int, tuple]:
        return self._map(lambda s, action: self.workers[s].step(action), actions)

    def _map(self, call: Callable[[int, A], R], args: dict[int, A]) -> dict[int, R]:
        """slot -> ``call(slot, arg)`` for each slot of ``args``, in its order."""
        if self._threads is None or len(args) < 2:
            return {s: call(s, a) for s, a in args.items()}
        futures = {s: self._threads.submit(call, s, a) for s, a in args.items()}
        # Every call ends before an error propagates: no env is still busy when it does.
        wait(futures.values())
        return {s: f.result() for s, f in futures.items()}

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown()
        for w in self.workers:
            w.env.close()


def actor_cpus(resources: dict[str, float], actors: int, wanted: float) -> float:
    """CPUs to reserve per env actor: ``wanted``, or an equal share of the cluster's CPUs
    when it has fewer than ``actors`` x ``wanted`` (actors that cannot all be placed wait
    forever: 4 one-CPU actors on 2 cores hung a rollout). Ray takes fractions below 1 and
    whole numbers above."""
    cpus = resources.get("CPU", 0.0)
    if cpus <= 0:
        raise ConfigError("rollout.ray: the Ray cluster has no CPUs to place env actors on")
    share = cpus / actors
    return min(wanted, math.floor(share) if share >= 1 else share)


class RayEnvPool:
    """Env slots as Ray actors; calls to different slots run in parallel."""

    def __init__(self, spec: EnvSpec, size: int, num_cpus_per_worker: float):
        import ray

        self._ray = ray
        self.size = size
        cpus = actor_cpus(ray.cluster_resources(), size, num_cpus_per_worker)
        actor = ray.remote(num_cpus=cpus)(EnvWorker)
        self.workers = [actor.remote(spec) for _ in range(size)]

    def reset(self, jobs):
        refs = [self.workers[s].reset.remote(task, seed) for s, (task, seed) in jobs.items()]
        return dict(zip(jobs, self._ray.get(refs), strict=True))

    def step(self, actions):
        slots = list(actions)
        refs = [self.workers[s].step.remote(actions[s]) for s in slots]
        return dict(zip(slots, self._ray.get(refs), strict=True))

    def close(self) -> None:
        for w in self.workers:
            self._ray.kill(w)
