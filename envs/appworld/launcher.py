"""Serve AppWorld's environment app on 127.0.0.1 for one toolgym world (AppWorld venv).

    .venv-appworld/bin/python envs/appworld/launcher.py --port 0 --workdir W [limits]

Started and stopped by :mod:`envs.appworld.server`, never by hand. Differences from the stock
``appworld serve`` command, which binds 0.0.0.0 with no host option:

* binds 127.0.0.1 only, and answers only requests that carry the per-server token read from
  the first line of stdin (other local processes, and agent code running in a sibling
  server, cannot drive this world); only the endpoints toolgym uses are routed;
* the data root must already be laid out as ``$APPWORLD_ROOT/data``; outputs go under
  ``$APPWORLD_ROOT/experiments`` inside the throw-away ``--workdir``;
* agent code does not run here: ``/execute`` keeps AppWorld's guard (tightened: the modules
  in ``--block-module`` are no longer importable, the calls in ``--block-call`` refused),
  its messages and per-cell bookkeeping, but runs the cell in the episode's executor
  process (``executor.py``: a fresh fork per world, holding no world, ground truth,
  evaluator or secret, confined to reading the Python runtime; ``--seccomp`` refuses it
  processes, sockets, file metadata changes and reaching into other processes) and makes
  each API call it asks for on the world here. A cell that outlives its alarm by
  ``EXECUTOR_GRACE_S`` has its executor killed and ``/execute`` answers 504;
* with ``--landlock`` (Linux >= 5.13) the kernel confines the server and everything it
  starts: files can be created, written or removed only inside ``--workdir`` (and
  ``/dev/null``), and no other process's ``/proc`` entry can be read (the parent's
  ``environ`` holds API keys); where the kernel supports it (Landlock ABI 4 and 6), no TCP
  port can be bound or connected to and no signal sent outside the server;
* resource limits (address space, file size, no core dumps) apply to the server and its
  executors;
* the process empties its working directory and exits when stdin closes (its parent
  died), and exits on SIGTERM, in both cases without running
  IPython's per-episode exit hooks (seconds each; every output is already on disk).

Exit status 3 means the port is taken, 4 that Landlock was asked for and is unavailable, 5
that an executor cannot confine itself (Landlock, or seccomp on another architecture). The
protections in force, the server's and the executors', are written on one line to
``W/protections``.
The bound port is written to ``W/port`` once the socket listens; the parent then polls
``GET /`` until the app answers.
"""

from __future__ import annotations

import argparse
import ast
import hmac
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confinement import ConfinementError, confine
from executor import FAILED  # how AppWorld words a failed cell

PORT_IN_USE = 3
NO_LANDLOCK = 4
NO_EXECUTOR = 5
MIB = 1 << 20
EXECUTOR = Path(__file__).with_name("executor.py")
EXECUTOR_START_S = 30.0  # an executor's imports and confinement take well under 1 s
EXECUTOR_GRACE_S = 2.0  # past a cell's alarm, before its executor is killed
CELL_KILLED = 504  # /execute's status when the cell's executor had to be killed
LINE_BYTES = 16 << 20  # an executor's message longer than this is not one (outputs are cut)
ROUTES = frozenset({"/", "/initialize", "/execute", "/evaluate", "/task_completed"})
LISTEN_BACKLOG = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="toolgym's AppWorld server launcher")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--memory-mb", type=int, default=0, help="address-space cap; 0: none")
    parser.add_argument("--file-size-mb", type=int, default=0, help="largest file; 0: no cap")
    parser.add_argument("--block-module", action="append", default=[])
    parser.add_argument("--block-call", action="append", default=[])
    parser.add_argument("--landlock", action="store_true", help="confine writes to --workdir")
    parser.add_argument("--seccomp", action="store_true", help="refuse processes, sockets...")
    return parser.parse_args(argv)


def apply_limits(memory_mb: int, file_size_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * MIB, memory_mb * MIB))
    if file_size_mb:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_mb * MIB, file_size_mb * MIB))


def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Lets a recycled server reuse a port in TIME_WAIT; a listening owner still refuses us.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as error:
        print(f"cannot bind 127.0.0.1:{port}: {error}", file=sys.stderr, flush=True)
        os._exit(PORT_IN_USE)
    sock.listen(LISTEN_BACKLOG)
    return sock


def tighten_guard(modules: list[str], calls: list[str]) -> None:
    from appworld.common import safety_guard

    safety_guard.ALLOWED_MODULE_NAMES.difference_update(modules)
    safety_guard.DISALLOWED_FUNCTION_PATHS.update(calls)


def preload_apps() -> None:
    """Import every app's API and model modules now, not in the first ``/initialize``."""
    from appworld.apps import get_all_apps
    from appworld.common.utils import import_apis_module, import_models_module

    for app_name in get_all_apps():
        import_models_module(app_name)
        import_apis_module(app_name)


class TokenGate:
    """ASGI middleware: only known routes, only with the right ``x-toolgym-token``."""

    def __init__(self, app, token: bytes):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"x-toolgym-token", b"")
            if not hmac.compare_digest(given, self.token) or scope["path"] not in ROUTES:
                await send({"type": "http.response.start", "status": 403, "headers": []})
                await send({"type": "http.response.body", "body": b"forbidden"})
                return
        await self.app(scope, receive, send)


def exit_when_parent_dies(workdir: Path) -> None:
    """On stdin's EOF, empty the working directory (nobody else will) and exit. Landlock
    leaves the empty directory itself: removing it is a write to its parent."""

    def watch() -> None:
        sys.stdin.read()
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class CellKilledError(Exception):
    """The executor outlived the cell's time limit (or broke the protocol) and was killed."""


@dataclass
class Executor:
    """An episode's executor process, forked by the fork server, and its socket."""

    channel: socket.socket
    pidfd: int  # kills this process and no other, even once its pid is reused
    directory: Path
    pending: bytes = b""  # read past the last full line

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.channel.sendall(json.dumps(message, default=str).encode() + b"\n")
        except OSError:
            pass  # its death shows when its answer does not come

    def read(self, deadline: float) -> dict[str, Any] | None:
        """The next line as a JSON object; None past the deadline, at EOF, or on anything
        else (the executor runs agent code: nothing it writes is trusted)."""
        fd = self.channel.fileno()
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk or len(self.pending) > LINE_BYTES:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def stop(self) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone
        os.close(self.pidfd)
        self.channel.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class Executors:
    """The fork server (``executor.py``) and the executor of the current world, i.e. of
    the current episode: a fresh process for every world."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.root = args.workdir / "executors"
        self.root.mkdir()
        self.forked = 0
        self.world: Any = None
        self.current: Executor | None = None
        self.control, theirs = socket.socketpair()
        command = [
            sys.executable,
            str(EXECUTOR),
            f"--workdir={self.root}",
            *(["--landlock"] if args.landlock else []),
            *(["--seccomp"] if args.seccomp else []),
        ]
        environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.root)}
        environment |= {"TMPDIR": str(self.root), "PYTHONDONTWRITEBYTECODE": "1"}
        subprocess.Popen(command, stdin=theirs, cwd=self.root, env=environment)
        theirs.close()
        self.control.settimeout(EXECUTOR_START_S)

    def fork(self) -> tuple[Executor, str]:
        """A new executor, confined, and what confines it."""
        self.forked += 1
        directory = self.root / f"episode-{self.forked}"
        directory.mkdir()
        ours, theirs = socket.socketpair()
        try:
            request = json.dumps({"fork": directory.name}).encode()
            socket.send_fds(self.control, [request], [theirs.fileno()])
            reply = json.loads(self.control.recv(4096) or b"{}")
        except (OSError, ValueError) as error:
            raise CellKilledError(f"the agent-code fork server failed: {error!r}") from error
        finally:
            theirs.close()
        executor = Executor(ours, os.pidfd_open(reply["pid"]), directory)
        ready = executor.read(time.monotonic() + EXECUTOR_START_S)
        if ready is None or not isinstance(ready.get("ready"), str):
            executor.stop()
            raise CellKilledError(f"the agent-code executor did not start: {ready}")
        return executor, ready["ready"]

    def for_world(self, world: Any) -> Executor:
        """The world's executor, forked and told the task's time on its first cell."""
        if self.world is not world or self.current is None:
            if self.current is not None:
                self.current.stop()
            self.current, _ = self.fork()
            self.world = world
            init = {"datetime": str(world.task.datetime), "timeout_s": world.timeout_seconds}
            self.current.send({"init": init})
        return self.current

    def run(self, world: Any, code: str) -> str:
        """The cell's output; every API call it makes is made here, on the world."""
        executor = self.for_world(world)
        executor.send({"cell": code})
        deadline = time.monotonic() + (world.timeout_seconds or 0) + EXECUTOR_GRACE_S
        while True:
            message = executor.read(deadline)
            if message is not None and isinstance(message.get("output"), str):
                return message["output"]
            if message is None or "call" not in message:
                executor.stop()
                self.current = None
                raise CellKilledError(f"the cell did not end within {world.timeout_seconds} s")
            executor.send(call_api(world, message["call"]))


def call_api(world: Any, call: Any) -> dict[str, Any]:
    """``apis.<app>.<api>(*args, **kwargs)`` on the world, as the executor asked for it.
    Only the collection's entries are reachable, never its own methods (it is a dict:
    ``apis.<app>.clear()`` would empty the world's app)."""
    try:
        app, api, args, kwargs = call
        if not (isinstance(args, list) and isinstance(kwargs, dict)):
            raise TypeError
        if not all(isinstance(n, str) and n and not n.startswith("_") for n in (app, api)):
            raise TypeError
    except (TypeError, ValueError):
        return {"error": ["Exception", "malformed API call"]}
    try:
        result = _entry(_entry(world.apis, app), api)(*args, **kwargs)
    except Exception as error:  # the API's answer to the agent, e.g. a 401
        return {"error": [type(error).__name__, str(error)]}
    from munch import unmunchify

    return {"result": unmunchify(result)}


def _entry(collection: Any, key: str) -> Any:
    """``collection[key]``, or AppWorld's own message for a name it does not have."""
    if key in collection.keys():
        return collection[key]
    missing = getattr(type(collection), "error_message", "{key} does not exist.")
    raise Exception(missing.format(key=key))


def execute_cell(executors: Executors, world: Any, code: str) -> str:
    """``AppWorld.execute`` with the cell run by the episode's executor instead of the
    world's own IPython shell: the same guard, messages and per-cell bookkeeping."""

    def said(message: str) -> str:
        world.environment_io.append({"input": code, "output": message})
        return message

    if world.raise_on_unsafe_syntax:
        safe, why = world.safety_guard.is_syntax_safe(code)
        if not safe:
            return said(FAILED + why)
    code = code.strip()
    try:
        ast.parse(code)
    except SyntaxError as error:
        line = (error.text or "").rstrip()
        return said(f"{FAILED}Syntax error in line:\n{line}\nMessage: {error.msg}")
    if not code:
        return said("No code available to execute.")
    world.requester.reset_request_count()
    try:
        output = executors.run(world, code)
    except CellKilledError as error:
        from fastapi import HTTPException

        raise HTTPException(CELL_KILLED, str(error)) from error
    said(output.rstrip())
    world.num_interactions += 1
    world._save_state(world.output_db_home_path_on_disk)
    world.save_logs()
    world.requester.reset_request_count()
    return output


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    token = sys.stdin.readline().strip().encode()
    if not token:
        sys.exit("launcher: expected the server token on the first line of stdin")
    apply_limits(args.memory_mb, args.file_size_mb)
    os.chdir(args.workdir)
    sock = bind(args.port)
    protections = []
    if args.landlock:
        try:
            protections.append(f"server: {confine(args.workdir.resolve())}")
        except ConfinementError as error:
            print(error, file=sys.stderr, flush=True)
            os._exit(NO_LANDLOCK)
    exit_when_parent_dies(args.workdir)

    import uvicorn
    from appworld.environment import AppWorld
    from appworld.serve.environment import app

    tighten_guard(args.block_module, args.block_call)
    preload_apps()
    executors = Executors(args)
    AppWorld.execute = lambda world, code: execute_cell(executors, world, code)
    try:  # one executor now: a kernel that cannot confine it fails here, not mid-run
        probe, confined = executors.fork()
        probe.stop()
        protections.append(f"agent code: {confined}")
    except CellKilledError as error:
        print(error, file=sys.stderr, flush=True)
        os._exit(NO_EXECUTOR)
    (args.workdir / "protections").write_text("; ".join(protections))
    server = uvicorn.Server(
        uvicorn.Config(TokenGate(app, token), log_level="warning", lifespan="off")
    )
    (args.workdir / "port").write_text(str(sock.getsockname()[1]))
    server.run(sockets=[sock])
    os._exit(0)


if __name__ == "__main__":
    main()
