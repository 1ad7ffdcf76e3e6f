"""Serve AppWorld's environment app on 127.0.0.1 for one toolgym world (AppWorld venv).

    .venv-appworld/bin/python envs/appworld/launcher.py --port 0 --workdir W [limits]

Started and stopped by :mod:`envs.appworld.server`, never by hand. Differences from the stock
``appworld serve`` command, which binds 0.0.0.0 with no host option:

* binds 127.0.0.1 only, and answers only requests that carry the per-server token read from
  the first line of stdin (other local processes, and agent code running in a sibling
  server, cannot drive this world); only the endpoints toolgym uses are routed;
* the data root must already be laid out as ``$APPWORLD_ROOT/data``; outputs go under
  ``$APPWORLD_ROOT/experiments`` inside the throw-away ``--workdir``;
* AppWorld's safety guard is kept and tightened: the modules in ``--block-module`` are no
  longer importable and the calls in ``--block-call`` are refused before execution;
* with ``--landlock`` (Linux >= 5.13) the kernel confines the server and everything it
  starts: files can be created, written or removed only inside ``--workdir`` (and
  ``/dev/null``), and no other process's ``/proc`` entry can be read (the parent's
  ``environ`` holds API keys); where the kernel supports it (Landlock ABI 4 and 6), no TCP
  port can be bound or connected to and no signal sent outside the server. AppWorld's guard
  is an AST filter that aliasing gets past (``f = open``, ``getattr(__builtins__, ...)``);
  this is what keeps such code from harming the host;
* with ``--seccomp`` (x86-64 Linux) the kernel refuses, once the server's socket is bound,
  every call that starts a process (``execve``, ``fork``, non-thread ``clone``), opens a new
  socket of any family (UDP, unix, netlink...: the bound socket still accepts), changes a
  file's mode, owner, times or extended attributes (Landlock guards contents, not metadata),
  or reaches into other processes or namespaces (``ptrace``, ``process_vm_*``, ``mount``,
  ``unshare``, ``setns``, ``bpf``, ``keyctl``, ``perf_event_open``, ``io_uring``): agent
  code past the guard gets ``PermissionError``, and no process outlives the server because
  none can be started;
* resource limits (address space, file size, no core dumps) apply to the server and to
  anything agent code manages to start from it;
* the process empties its working directory and exits when stdin closes (its parent
  died), and exits on SIGTERM, in both cases without running
  IPython's per-episode exit hooks (seconds each; every output is already on disk).

Exit status 3 means the port is taken, 4 that Landlock was asked for and is unavailable, 5
that seccomp was asked for and is unavailable (another architecture, or the kernel refused).
The protections in force are written, one line, to ``W/protections``.
The bound port is written to ``W/port`` once the socket listens; the parent then polls
``GET /`` until the app answers.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import hmac
import os
import platform
import resource
import shutil
import socket
import sys
import threading
from pathlib import Path

PORT_IN_USE = 3
NO_LANDLOCK = 4
NO_SECCOMP = 5
MIB = 1 << 20
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


class Landlock:
    """The few Landlock constants and syscalls we use (linux/landlock.h; the syscall numbers
    are those of x86-64 and arm64)."""

    CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446
    RULESET_VERSION = 1 << 0
    RULE_PATH_BENEATH = 1
    PR_SET_NO_NEW_PRIVS = 38
    # Filesystem rights that create, change or remove something, by the ABI that added them.
    WRITE_RIGHTS = {1: 0b1_1111_1111_0010, 2: 1 << 13, 3: 1 << 14}
    FILE_WRITE_RIGHTS = (1 << 1) | (1 << 14)  # write, truncate: the ones a file rule takes
    READ_FILE, READ_DIR = 1 << 2, 1 << 3
    FILE_RIGHTS = (1 << 0) | FILE_WRITE_RIGHTS | READ_FILE | (1 << 15)  # + execute, ioctl_dev
    NET_RIGHTS_ABI, NET_BIND_CONNECT = 4, 0b11
    SCOPE_ABI, SCOPE_SIGNAL = 6, 1 << 1

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneathAttr(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def confine(workdir: Path) -> str:
    """Allow filesystem writes only beneath ``workdir``; reads everywhere but in other
    processes' ``/proc`` entries (the parent's environment holds API keys); no TCP binds or
    connects and no signals out of the sandbox where the kernel's Landlock ABI has them.
    Returns what is in force, in words."""
    libc = ctypes.CDLL(None, use_errno=True)

    def syscall(number: int, *args) -> int:
        result = libc.syscall(number, *args)
        if result < 0:
            print(f"Landlock: {os.strerror(ctypes.get_errno())}", file=sys.stderr, flush=True)
            os._exit(NO_LANDLOCK)
        return result

    abi = syscall(Landlock.CREATE_RULESET, None, 0, Landlock.RULESET_VERSION)
    writes = sum(rights for version, rights in Landlock.WRITE_RIGHTS.items() if version <= abi)
    reads = Landlock.READ_FILE | Landlock.READ_DIR
    has_net, has_scope = abi >= Landlock.NET_RIGHTS_ABI, abi >= Landlock.SCOPE_ABI
    attr = Landlock.RulesetAttr(
        fs=writes | reads,
        net=Landlock.NET_BIND_CONNECT if has_net else 0,
        scoped=Landlock.SCOPE_SIGNAL if has_scope else 0,
    )
    # An older kernel knows a shorter struct: pass only the fields its ABI has.
    size = ctypes.sizeof(ctypes.c_uint64) * (1 + has_net + has_scope)
    ruleset = syscall(Landlock.CREATE_RULESET, ctypes.byref(attr), size, 0)
    # Landlock only allows: every top-level entry but /proc is readable, and /proc/self
    rules = [(Path("/", entry), reads) for entry in os.listdir("/") if entry != "proc"]
    rules += [
        (Path("/proc/self"), reads),
        (workdir, writes | reads),
        (Path("/dev/null"), Landlock.FILE_WRITE_RIGHTS | Landlock.READ_FILE),
    ]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH)
        except OSError:  # a dangling top-level symlink
            continue
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            rights &= Landlock.FILE_RIGHTS  # a file takes no directory rights
        rule = Landlock.PathBeneathAttr(allowed=rights & (writes | reads), parent_fd=fd)
        syscall(Landlock.ADD_RULE, ruleset, Landlock.RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        os.close(fd)
    libc.prctl(Landlock.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    syscall(Landlock.RESTRICT_SELF, ruleset, 0)
    os.close(ruleset)
    scope = ["writes in the workdir only", "no other process's /proc"]
    scope += ["no TCP"] * has_net + ["no signals out"] * has_scope
    return f"Landlock ABI {abi} ({', '.join(scope)})"


class Seccomp:
    """A classic-BPF seccomp filter (linux/seccomp.h, linux/filter.h) for x86-64."""

    ARCH_X86_64 = 0xC000003E  # AUDIT_ARCH_X86_64
    X32_SYSCALL_BIT = 0x40000000
    NR_OFFSET, ARCH_OFFSET, ARG0_OFFSET = 0, 4, 16  # struct seccomp_data (little endian)
    LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, KILL_PROCESS, ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
    SYSCALL, SET_MODE_FILTER, FILTER_FLAG_TSYNC = 317, 1, 1
    CLONE, CLONE_THREAD = 56, 0x10000
    # x86-64 numbers (asm/unistd_64.h) refused with EPERM
    DENIED = {
        "processes": (57, 58, 59, 322),  # fork vfork execve execveat
        "sockets": (41,),  # socket (socketpair, accept stay: they reach nothing new)
        "metadata": (90, 91, 268, 452, 92, 93, 94, 260, 132, 235, 261, 280)
        + (188, 189, 190, 197, 198, 199),  # chmod*, chown*, utime*, *setxattr/*removexattr
        "other processes": (101, 310, 311, 298),  # ptrace process_vm_* perf_event_open
        "namespaces": (165, 166, 155, 161, 272, 308, 428, 429, 430, 431, 432, 442),
        "kernel objects": (321, 248, 249, 250, 323, 425),  # bpf *key* userfaultfd io_uring
    }
    CLONE3, ENOSYS = 435, 38  # refused as unknown: glibc then makes threads with clone

    class Filter(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.c_void_p)]


def seccomp_program() -> list[tuple[int, int, int, int]]:
    """The filter: other architectures and x32 calls are refused outright; ``clone`` is
    allowed only for threads; every listed call fails with EPERM (clone3 with ENOSYS)."""
    s = Seccomp
    eperm = s.ERRNO | errno.EPERM
    program = [
        (s.LD_ABS, 0, 0, s.ARCH_OFFSET),
        (s.JEQ, 1, 0, s.ARCH_X86_64),
        (s.RET, 0, 0, s.KILL_PROCESS),
        (s.LD_ABS, 0, 0, s.NR_OFFSET),
        (s.JGE, 0, 1, s.X32_SYSCALL_BIT),
        (s.RET, 0, 0, eperm),
        (s.JEQ, 0, 1, s.CLONE3),
        (s.RET, 0, 0, s.ERRNO | s.ENOSYS),
    ]
    for number in sorted({n for group in s.DENIED.values() for n in group}):
        program += [(s.JEQ, 0, 1, number), (s.RET, 0, 0, eperm)]
    program += [
        (s.JEQ, 0, 3, s.CLONE),
        (s.LD_ABS, 0, 0, s.ARG0_OFFSET),  # clone's flags (low 32 bits)
        (s.JSET, 1, 0, s.CLONE_THREAD),
        (s.RET, 0, 0, eperm),
        (s.RET, 0, 0, s.ALLOW),
    ]
    return program


def install_seccomp() -> str:
    """Install :func:`seccomp_program` on every thread of this process and all it starts.
    Returns what is in force, in words."""
    if platform.machine() != "x86_64":
        print(f"seccomp: no filter for {platform.machine()}", file=sys.stderr, flush=True)
        os._exit(NO_SECCOMP)
    program = seccomp_program()
    filters = (Seccomp.Filter * len(program))(*program)
    prog = Seccomp.Program(len(program), ctypes.cast(filters, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(Landlock.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.syscall(
        Seccomp.SYSCALL, Seccomp.SET_MODE_FILTER, Seccomp.FILTER_FLAG_TSYNC, ctypes.byref(prog)
    ):
        print(f"seccomp: {os.strerror(ctypes.get_errno())}", file=sys.stderr, flush=True)
        os._exit(NO_SECCOMP)
    return f"seccomp (no {', no '.join(Seccomp.DENIED)})"


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


def prepare_ipython_profile() -> None:
    """Create IPython's profile directory (``$IPYTHONDIR``) now: each world's shell would
    create it on first use by copying a README with ``shutil.copy``, whose ``chmod`` the
    seccomp filter refuses."""
    from IPython.core.profiledir import ProfileDir

    ipython_dir = Path(os.environ["IPYTHONDIR"])
    ipython_dir.mkdir(parents=True, exist_ok=True)
    ProfileDir.create_profile_dir_by_name(str(ipython_dir), "default")


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
        protections.append(confine(args.workdir.resolve()))
    exit_when_parent_dies(args.workdir)

    import uvicorn
    from appworld.serve.environment import app

    tighten_guard(args.block_module, args.block_call)
    preload_apps()
    if args.seccomp:  # after the imports: nothing legitimate starts a process from here on
        prepare_ipython_profile()
        protections.append(install_seccomp())
    (args.workdir / "protections").write_text("; ".join(protections) or "none")
    server = uvicorn.Server(
        uvicorn.Config(TokenGate(app, token), log_level="warning", lifespan="off")
    )
    (args.workdir / "port").write_text(str(sock.getsockname()[1]))
    server.run(sockets=[sock])
    os._exit(0)


if __name__ == "__main__":
    main()
