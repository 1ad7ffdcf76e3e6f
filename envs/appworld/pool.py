"""A process-wide pool of AppWorld servers: one server per concurrent episode.

AppWorld holds one world per process and serves one request at a time, so parallel
episodes need parallel server processes. A :class:`ServerPool` starts servers on demand up
to ``max_servers``, leases each to one env at a time, and recycles a server (stops it;
a fresh one starts on the next lease) after ``episodes_per_server`` episodes, because a
server's memory and latency grow with every world it has opened (shared/APPWORLD.md §6).

Envs built with the same settings in one process share a pool (:func:`shared_pool`), so
warm servers outlive the envs that used them; all servers stop at interpreter exit. On a
Ray cluster each actor process has its own pool: the unit of parallelism is the actor.
"""

from __future__ import annotations

import atexit
import gc
import itertools
import os
import threading
from dataclasses import dataclass

from envs.appworld.server import AppWorldServer, ServerSettings


@dataclass(frozen=True)
class PoolSettings:
    server: ServerSettings
    max_servers: int
    episodes_per_server: int
    lease_timeout_s: float
    split: str
    """Envs of different splits never share a pool: whatever a training episode's code
    left on a server cannot reach a held-out evaluation."""


class PoolExhaustedError(RuntimeError):
    """Every server is leased to an open env."""


class ServerPool:
    """Leases servers; thread-safe. Slot ``i`` binds ``port + i`` (any free port if 0)."""

    def __init__(self, settings: PoolSettings):
        self.settings = settings
        self._idle: list[AppWorldServer] = []  # LIFO: an env's next lease is its warm server
        self._leased: dict[int, AppWorldServer] = {}
        self._free_slots = list(range(settings.max_servers))[::-1]
        self._slot_of: dict[int, int] = {}
        self._names = itertools.count()
        self._changed = threading.Condition()

    def lease(self) -> AppWorldServer:
        """An idle server, a newly started one, or (at the cap) the next one released. An
        idle server that died while waiting is stopped and replaced, never handed out."""
        dead: list[AppWorldServer] = []
        try:
            return self._lease(dead)
        finally:
            for server in dead:
                server.stop()

    def _lease(self, dead: list[AppWorldServer]) -> AppWorldServer:
        with self._changed:
            if not self._idle and not self._free_slots:
                gc.collect()  # runs the finalizers of dropped, unclosed envs: their leases return
            if not self._changed.wait_for(
                lambda: self._idle or self._free_slots, self.settings.lease_timeout_s
            ):
                raise PoolExhaustedError(
                    f"all {self.settings.max_servers} AppWorld servers are leased to open envs "
                    f"and none came back within {self.settings.lease_timeout_s} s: close envs "
                    "you no longer use, or raise max_servers"
                )
            while self._idle:
                server = self._idle.pop()
                if server.alive:
                    self._leased[id(server)] = server
                    return server
                dead.append(server)
                self._free_slots.append(self._slot_of.pop(id(server)))
            slot = self._free_slots.pop()
        try:
            server = self._start(slot)
        except BaseException:
            with self._changed:
                self._free_slots.append(slot)
                self._changed.notify()
            raise
        with self._changed:
            self._leased[id(server)] = server
            self._slot_of[id(server)] = slot
        return server

    def release(self, server: AppWorldServer) -> None:
        """Return a lease; a dead or worn-out server is stopped and its slot freed."""
        with self._changed:
            if self._leased.pop(id(server), None) is None:
                return
            retire = not server.alive or server.episodes >= self.settings.episodes_per_server
            if not retire:
                self._idle.append(server)
                self._changed.notify()
                return
            slot = self._slot_of.pop(id(server))
        server.stop()
        with self._changed:
            self._free_slots.append(slot)
            self._changed.notify()

    def shutdown(self) -> None:
        """Stop every server, leased or idle."""
        with self._changed:
            servers = self._idle + list(self._leased.values())
            self._idle, self._leased = [], {}
            self._free_slots = list(range(self.settings.max_servers))[::-1]
            self._slot_of.clear()
        for server in servers:
            server.stop()

    @property
    def size(self) -> int:
        """Servers currently running (idle or leased)."""
        with self._changed:
            return len(self._idle) + len(self._leased)

    def _start(self, slot: int) -> AppWorldServer:
        base = self.settings.server.port
        # Distinct experiment names per server: outputs of concurrent worlds never mix.
        name = f"toolgym-{os.getpid()}-{slot}-{next(self._names)}"
        return AppWorldServer(self.settings.server, base + slot if base else 0, name)


_POOLS: dict[PoolSettings, ServerPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(settings: PoolSettings) -> ServerPool:
    """The process's pool for these settings, created on first use."""
    with _POOLS_LOCK:
        if settings not in _POOLS:
            _POOLS[settings] = ServerPool(settings)
        return _POOLS[settings]


@atexit.register
def _stop_all_servers() -> None:
    for pool in list(_POOLS.values()):
        pool.shutdown()
