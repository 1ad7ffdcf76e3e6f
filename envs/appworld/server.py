"""One AppWorld server process: started, spoken to over loopback HTTP, and stopped by toolgym.

The server is ``envs/appworld/launcher.py`` run by the AppWorld venv's Python (AppWorld pins
pydantic 1 and cannot be imported here). Each server gets:

* its own throw-away working directory, removed on stop, whose ``root/data`` is a symlink to
  the AppWorld data (``APPWORLD_ROOT``): episode outputs land in that directory, never in
  the data;
* a minimal environment (no variable of ours is inherited, so no secrets), with ``HOME``
  and ``IPYTHONDIR`` inside the working directory and ``.env`` loading disabled;
* Landlock (when ``landlock`` is set): it may write only inside its working directory;
* agent code run in a separate executor process per episode, which holds no world, ground
  truth or evaluator, reads only the Python runtime and, with ``seccomp``, can start no
  process, open no socket and change no file's metadata (``launcher.py``, ``executor.py``);
* a random token, passed on stdin, that every request must carry; the launcher exits when
  its stdin closes, so a dead toolgym process leaves no server behind.

``stop`` sends SIGTERM, waits ``shutdown_grace_s``, then SIGKILLs, always by the PID it
started. Every failure is one of the :class:`AppWorldServerError` subclasses below, with
the tail of the server's log in its message.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.config import ConfigError

LAUNCHER = Path(__file__).with_name("launcher.py")
PORT_IN_USE_STATUS = 3  # the launcher's exit status when it cannot bind
NO_LANDLOCK_STATUS = 4  # ... and when Landlock was asked for and is unavailable
NO_EXECUTOR_STATUS = 5  # ... and when its first agent-code executor cannot start
CELL_KILLED_STATUS = 504  # /execute's answer when the cell's executor was killed
logger = logging.getLogger(__name__)
_told: set[str] = set()  # protection lines already logged by this process
LOG_TAIL_CHARS = 2000
POLL_INTERVAL_S = 0.05


class AppWorldServerError(RuntimeError):
    """The AppWorld server could not do what was asked (infrastructure, not the agent)."""


class PortInUseError(AppWorldServerError, ConfigError):
    """The configured port on 127.0.0.1 is already taken (a configuration mistake)."""


class ServerDiedError(AppWorldServerError):
    """The server process is gone or stopped answering connections."""


class CellKilledError(AppWorldServerError):
    """A cell outlived its time limit and the server killed the process running it: the
    episode's session is gone, the server is fine."""


class ExecutionTimeoutError(AppWorldServerError):
    """A request did not return within its time limit (e.g. code AppWorld's alarm can't stop)."""


@dataclass(frozen=True)
class ServerSettings:
    """How to launch and talk to one server; see ``configs/env/appworld.yaml`` for each field."""

    python: Path
    data_root: Path
    port: int
    start_timeout_s: float
    shutdown_grace_s: float
    memory_limit_mb: int
    file_size_limit_mb: int
    blocked_modules: tuple[str, ...]
    blocked_calls: tuple[str, ...]
    landlock: bool
    seccomp: bool
    workdir_parent: str


class AppWorldServer:
    """A started launcher process. Not thread-safe: one request at a time, like the server."""

    def __init__(self, settings: ServerSettings, port: int, experiment_name: str):
        self.settings = settings
        self.experiment_name = experiment_name
        self.episodes = 0
        self._requested_port = port
        self._token = secrets.token_hex(16)
        self._workdir = Path(
            tempfile.mkdtemp(prefix="toolgym-appworld-", dir=settings.workdir_parent or None)
        )
        self._process: subprocess.Popen | None = None
        self.port = 0
        self.protections = ""  # what the launcher says is in force, once started
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    # -- lifecycle -------------------------------------------------------------------
    def _start(self) -> None:
        s = self.settings
        root = self._workdir / "root"
        root.mkdir()
        (root / "data").symlink_to(s.data_root.resolve() / "data")
        for sub in ("home", "tmp"):
            (self._workdir / sub).mkdir()
        command = [
            str(s.python),
            str(LAUNCHER),
            f"--port={self._requested_port}",
            f"--workdir={self._workdir}",
            f"--memory-mb={s.memory_limit_mb}",
            f"--file-size-mb={s.file_size_limit_mb}",
            *(["--landlock"] if s.landlock else []),
            *(["--seccomp"] if s.seccomp else []),
            *(f"--block-module={m}" for m in s.blocked_modules),
            *(f"--block-call={c}" for c in s.blocked_calls),
        ]
        with (self._workdir / "server.log").open("wb") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                env=self._environment(root),
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle
            )
        self._process.stdin.write(self._token.encode() + b"\n")
        self._process.stdin.flush()
        self.port = self._wait_for_port()
        self._wait_until_answering()
        self.protections = (self._workdir / "protections").read_text()
        if self.protections not in _told:  # once per process, not per server
            _told.add(self.protections)
            logger.info(f"AppWorld sandbox: {self.protections}")

    def _environment(self, root: Path) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self._workdir / "home"),
            "IPYTHONDIR": str(self._workdir / "home" / ".ipython"),
            "TMPDIR": str(self._workdir / "tmp"),
            "APPWORLD_ROOT": str(root),
            "PYTHON_DOTENV_DISABLED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def _wait_for_port(self) -> int:
        port_file = self._workdir / "port"
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            status = self._process.poll()
            if status == PORT_IN_USE_STATUS:
                raise PortInUseError(
                    f"127.0.0.1:{self._requested_port} is already in use; free it, set "
                    f"another appworld port, or port: 0 for any free port. {self._log_tail()}"
                )
            if status == NO_LANDLOCK_STATUS:
                raise AppWorldServerError(
                    "this kernel does not let the AppWorld server confine itself with Landlock "
                    "(Linux >= 5.13). Set landlock: false and unsafe_no_sandbox: true to run "
                    "without it: agent code that gets past AppWorld's guard can then write "
                    "wherever the server's user can. "
                    f"{self._log_tail()}"
                )
            if status == NO_EXECUTOR_STATUS:
                raise AppWorldServerError(
                    "the AppWorld server's agent-code executor cannot confine itself here "
                    "(Landlock needs Linux >= 5.13, seccomp x86-64 Linux). Set seccomp: false "
                    "and unsafe_no_sandbox: true to run without seccomp: agent code that gets "
                    "past AppWorld's guard can then start processes and open sockets. "
                    f"{self._log_tail()}"
                )
            if status is not None:
                raise ServerDiedError(
                    f"the AppWorld server exited with status {status} while starting. "
                    f"{self._log_tail()}"
                )
            if port_file.exists() and port_file.read_text().strip():
                return int(port_file.read_text())
            time.sleep(POLL_INTERVAL_S)
        raise AppWorldServerError(
            f"the AppWorld server did not start within {self.settings.start_timeout_s} s. "
            f"{self._log_tail()}"
        )

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        while True:
            try:
                self._request("GET", "/", None, timeout=self.settings.start_timeout_s)
                return
            except ServerDiedError:
                if not self.alive or time.monotonic() > deadline:
                    raise
                time.sleep(POLL_INTERVAL_S)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def workdir(self) -> Path:
        return self._workdir

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; remove the working directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.settings.shutdown_grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdin:
            process.stdin.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _process_state(self) -> str | None:
        """The server process's state letter from /proc (R, S, T...), None once gone."""
        if self._process is None or self._process.poll() is not None:
            return None
        try:
            with open(f"/proc/{self._process.pid}/stat") as stat:
                return stat.read().rsplit(") ", 1)[1][0]
        except (FileNotFoundError, IndexError):
            return None

    # -- requests --------------------------------------------------------------------
    def call(self, path: str, body: dict[str, Any], timeout: float) -> Any:
        """POST ``body`` to ``path``; returns AppWorld's ``output``. Raises
        :class:`ExecutionTimeoutError` if no answer comes within ``timeout`` seconds."""
        return self._request("POST", path, body, timeout)

    def _request(self, method: str, path: str, body: dict | None, timeout: float) -> Any:
        # A fresh connection per request: a kept-alive one the server closed while idle
        # cannot be told apart from a request that was lost, and /execute must not repeat.
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"x-toolgym-token": self._token, "content-type": "application/json"}
        try:
            connection.request(method, path, json.dumps(body) if body else None, headers)
            response = connection.getresponse()
            payload = response.read()
        except TimeoutError as error:
            # the server's own fault when its process is stopped (SIGSTOP) or gone, not the
            # agent code's
            state = self._process_state()
            if state in ("T", "t", None):
                why = "gone" if state is None else "stopped (SIGSTOP?)"
                raise ServerDiedError(
                    f"AppWorld server did not answer: its process is {why}"
                ) from error
            raise ExecutionTimeoutError(
                f"AppWorld {path} did not answer within {timeout:.0f} s"
            ) from error
        except (ConnectionError, http.client.HTTPException, OSError) as error:
            # A dying server resets its sockets before the kernel reports its exit: give it
            # the shutdown grace to finish dying before saying whether it is alive.
            if self._process is not None:
                try:
                    self._process.wait(self.settings.shutdown_grace_s)
                except subprocess.TimeoutExpired:
                    pass
            state = "is alive" if self.alive else f"exited ({self._process_status()})"
            raise ServerDiedError(
                f"AppWorld server on port {self.port} failed {path} ({error!r}); the process "
                f"{state}. {self._log_tail()}"
            ) from error
        finally:
            connection.close()
        if response.status == CELL_KILLED_STATUS:
            raise CellKilledError(json.loads(payload).get("detail", "the cell was killed"))
        if response.status != 200:
            raise AppWorldServerError(
                f"AppWorld {path} answered HTTP {response.status}: "
                f"{payload[:LOG_TAIL_CHARS].decode(errors='replace')}"
            )
        return json.loads(payload).get("output") if path != "/" else None

    def _process_status(self) -> str:
        return "never started" if self._process is None else f"status {self._process.poll()}"

    def _log_tail(self) -> str:
        log = self._workdir / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return f"Server log (tail): {text[-LOG_TAIL_CHARS:]}" if text.strip() else ""
