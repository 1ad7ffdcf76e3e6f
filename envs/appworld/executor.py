"""Run each episode's agent code in a process of its own, apart from the AppWorld world.

    .venv-appworld/bin/python envs/appworld/executor.py --workdir D [--landlock] [--seccomp]

Started by ``launcher.py`` (AppWorld venv), never by hand. The world, its databases, the
task's ground truth and AppWorld's evaluator stay in the launcher; no process here holds
any of them.

This process is a fork server: it imports what cells need once, confines itself (``--landlock``:
reads only of the Python runtime -- the AppWorld venv, its base Python, system libraries,
time zones -- and writes only beneath ``D``), and then, for each episode, forks an executor
(a few ms, where a fresh interpreter took ~90 ms of CPU). Its stdin is a unix socket to the
launcher carrying ``{"fork": name}`` with the episode's socket attached; it answers
``{"pid": N}``. An executor confines itself further before it reads anything: writes only
beneath ``D/name``; with ``--seccomp`` no process, no socket, no file metadata change, no
reaching into other processes; at most a handful of open files; it dies with the fork
server, which dies with the launcher. What agent code can reach is its own memory and
``D/name``; patching AppWorld modules there changes nothing in the world.

An executor speaks one JSON object per line over its socket:

* executor: ``{"ready": protections}`` once confined;
* launcher: ``{"init": {"datetime": ISO, "timeout_s": N}}``, then ``{"cell": code}``;
* executor: ``{"call": [app, api, args, kwargs]}`` for each ``apis.<app>.<api>(...)`` a
  cell makes, answered ``{"result": value}`` or ``{"error": [type name, message]}``; then
  ``{"output": text}`` for the cell, as AppWorld words it (what it printed, ``Execution
  successful.``, or ``Execution failed. Traceback:`` and the cell's frames).

Cells run as AppWorld's shell runs them: in one namespace per episode, with AppWorld's
preamble (its imports, ``print`` writing lists and dicts as JSON, ``input`` refused), the
clock frozen at the task's time, and a per-cell alarm. AppWorld's own ``ApiCollection`` and
``Requester`` are not in the namespace: ``apis`` forwards each call to the world.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import ctypes
import importlib.util
import io
import json
import linecache
import os
import resource
import signal
import socket
import sys
import sysconfig
import traceback
import types
from pathlib import Path
from typing import Any

from confinement import ConfinementError, confine, install_seccomp

CELL = "<python-input>"  # the file name AppWorld gives a cell in tracebacks
FAILED = "Execution failed. Traceback:\n"
PR_SET_PDEATHSIG = 1
OPEN_FILES = 64  # agent code gets a handful of descriptors, not the system's
# a cell's output is cut here (the env shows max_observation_chars of it, 12,000 by default)
OUTPUT_CHARS = 1_000_000
# AppWorld's TRUE_AVAILABLE_IMPORTS less its ApiCollection and Requester, and its preamble
PREAMBLE = """
import builtins
import calendar
import datetime
import itertools
import json
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from copy import deepcopy
from functools import reduce

import pendulum
from pendulum import MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY

from appworld.common.datetime import pendulum
from appworld.common.datetime import VanillaDate as Date
from appworld.common.datetime import VanillaDateTime as DateTime
from appworld.common.datetime import VanillaTime as Time

def print(*args, **kwargs):
    if not kwargs and len(args) == 1 and isinstance(args[0], (list, tuple, dict)):
        indent = 1 if len(json.dumps(args[0])) >= 100 else None
        builtins.print(json.dumps(args[0], indent=indent))
    else:
        builtins.print(*args, **kwargs)

def input(*args, **kwargs):
    raise Exception("input(..) is not allowed. All decisions must be made autonomously.")
"""


class CellTimeout(BaseException):
    """The cell's alarm: a BaseException, so that agent code's ``except Exception`` does
    not swallow it."""


class Channel:
    """JSON lines to and from the launcher over the episode's socket."""

    def __init__(self, fd: int) -> None:
        self._in = os.fdopen(fd, "r", encoding="utf-8")
        self._out = os.fdopen(os.dup(fd), "w", encoding="utf-8")

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message, default=str) + "\n")
        self._out.flush()

    def receive(self) -> dict[str, Any]:
        line = self._in.readline()
        if not line:
            os._exit(0)  # the launcher is gone
        return json.loads(line)


class Api:
    def __init__(self, channel: Channel, app: str, name: str) -> None:
        self._channel, self._app, self._name = channel, app, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._channel.send({"call": [self._app, self._name, list(args), kwargs]})
        reply = self._channel.receive()
        if "error" in reply:
            kind, message = reply["error"]
            error = getattr(builtins, kind, None)  # a builtin error keeps its type
            if not (isinstance(error, type) and issubclass(error, Exception)):
                error = Exception
            raise error(message)
        return reply["result"]


class App:
    def __init__(self, channel: Channel, app: str) -> None:
        self._channel, self._app = channel, app

    def __getattr__(self, name: str) -> Api:
        if name.startswith("_"):
            raise AttributeError(name)
        return Api(self._channel, self._app, name)


class Apis:
    """``apis.<app>.<api>(...)``: each call is made by the world, in the launcher."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def __getattr__(self, app: str) -> App:
        if app.startswith("_"):
            raise AttributeError(app)
        return App(self._channel, app)


def load_appworld_datetime() -> None:
    """Make ``appworld.common.datetime`` importable without running ``appworld/__init__``
    (which imports every app, ~1.4 s): the parent packages are registered as bare ones."""
    spec = importlib.util.find_spec("appworld")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (("appworld", root), ("appworld.common", root / "common")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    import appworld.common.datetime  # noqa: F401


def runtime_paths() -> list[Path]:
    """What agent code may read: the interpreter, its libraries, and time zones."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths |= {sysconfig.get_path(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    system = ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo"]
    system += ["/etc/localtime", "/etc/ld.so.cache", "/dev/urandom"]
    return [Path(p) for p in sorted(paths | set(system))]


def confine_executor(args: argparse.Namespace, directory: Path) -> str:
    """An episode's executor, freshly forked: the confinement agent code runs in. Memory,
    file size and core limits come from the launcher (inherited through the fork server)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
    protections = [confine(directory, runtime_paths())] if args.landlock else []
    if args.seccomp:
        protections.append(install_seccomp())
    return "; ".join(protections) or "none"


def traceback_text(error: BaseException) -> str:
    """The cell's own frames and the error, as AppWorld's shell reports them."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == CELL]
    lines = traceback.format_list(frames) + traceback.format_exception_only(error)
    return FAILED + "".join(lines).rstrip("\n")


def run_cell(code: str, namespace: dict[str, Any], timeout_s: int) -> str:
    linecache.cache[CELL] = (len(code), None, code.splitlines(keepends=True), CELL)
    printed = io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            exec(compile(code, CELL, "exec"), namespace)
    except CellTimeout:
        return f"{FAILED}Execution timed out after {timeout_s} seconds."
    except BaseException as error:  # the agent's error, SystemExit included: reported
        return traceback_text(error)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    output = printed.getvalue()
    if len(output) > OUTPUT_CHARS:
        output = output[:OUTPUT_CHARS] + f"\n[output cut at {OUTPUT_CHARS} characters]"
    return output if output.strip() else "Execution successful."


def _alarm(signum: int, frame: Any) -> None:
    raise CellTimeout


def execute(args: argparse.Namespace, name: str, fd: int) -> None:
    """One episode's executor (a forked child): confine, then run cells until EOF."""
    import freezegun

    die_with_parent()
    directory = args.workdir / name
    os.chdir(directory)
    channel = Channel(fd)
    try:
        channel.send({"ready": confine_executor(args, directory)})
    except ConfinementError as error:
        channel.send({"error": str(error)})
        os._exit(1)
    init = channel.receive()["init"]
    freezegun.freeze_time(init["datetime"]).start()
    signal.signal(signal.SIGALRM, _alarm)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(PREAMBLE, "<preamble>", "exec"), namespace)
    namespace["apis"] = Apis(channel)
    while True:
        code = channel.receive()["cell"]
        channel.send({"output": run_cell(code, namespace, init["timeout_s"])})


def die_with_parent() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description="toolgym's AppWorld agent-code fork server")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--landlock", action="store_true")
    parser.add_argument("--seccomp", action="store_true")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    die_with_parent()
    load_appworld_datetime()
    import freezegun  # noqa: F401  (imported once here, for every executor)

    control = socket.socket(fileno=0)  # the launcher's end is the other of a socketpair
    try:
        if args.landlock:
            confine(args.workdir, runtime_paths())
    except ConfinementError as error:
        sys.exit(str(error))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # executors are reaped by the kernel
    while True:
        data, fds, _, _ = socket.recv_fds(control, 4096, 1)
        if not data:
            os._exit(0)  # the launcher is gone
        pid = os.fork()
        if pid == 0:
            control.close()  # an executor cannot ask for more processes
            execute(args, json.loads(data)["fork"], fds[0])
            os._exit(0)
        os.close(fds[0])
        control.send(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    main()
