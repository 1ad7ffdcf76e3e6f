"""Kernel confinement for AppWorld's processes, by hand over ctypes (no dependency):
Landlock (filesystem, TCP and signal rules) and a seccomp filter (refused system calls).

Used by ``launcher.py`` (the server holding the world: writes only in its directory) and
``executor.py`` (agent code: reads only the Python runtime, writes only its directory, and
no processes, sockets, metadata changes or reaching into other processes). Both run under
the AppWorld venv's Python as scripts beside this file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from pathlib import Path


class ConfinementError(RuntimeError):
    """The kernel cannot apply a confinement that was asked for."""


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


def confine(writable: Path, readable: list[Path] | None = None) -> str:
    """Allow filesystem writes only beneath ``writable`` (and to ``/dev/null``); reads only
    beneath ``readable`` and ``writable``, or, with ``readable=None``, everywhere but in
    other processes' ``/proc`` entries (a parent's ``environ`` holds API keys); no TCP binds
    or connects and no signals out where the kernel's Landlock ABI has them. Returns what is
    in force, in words; raises :class:`ConfinementError` where Landlock is unavailable."""
    libc = ctypes.CDLL(None, use_errno=True)

    def syscall(number: int, *args) -> int:
        result = libc.syscall(number, *args)
        if result < 0:
            raise ConfinementError(f"Landlock: {os.strerror(ctypes.get_errno())}")
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
    if readable is None:  # every top-level entry but /proc, and /proc/self
        readable = [Path("/", entry) for entry in os.listdir("/") if entry != "proc"]
        what = "no other process's /proc"
    else:
        what = "reads only of the Python runtime"
    rules = [(path, reads) for path in [*readable, Path("/proc/self")]]
    rules += [
        (writable, writes | reads),
        (Path("/dev/null"), Landlock.FILE_WRITE_RIGHTS | Landlock.READ_FILE),
    ]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH)
        except OSError:  # not on this machine, or a dangling symlink
            continue
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            rights &= Landlock.FILE_RIGHTS  # a file takes no directory rights
        rule = Landlock.PathBeneathAttr(allowed=rights & (writes | reads), parent_fd=fd)
        syscall(Landlock.ADD_RULE, ruleset, Landlock.RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        os.close(fd)
    libc.prctl(Landlock.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    syscall(Landlock.RESTRICT_SELF, ruleset, 0)
    os.close(ruleset)
    scope = ["writes in its directory only", what]
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
        # System V and POSIX message queues, semaphores, shared memory: host-wide, not ours
        "IPC": (29, 30, 31, 64, 65, 66, 68, 69, 70, 71, 220) + tuple(range(240, 246)),
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
        raise ConfinementError(f"seccomp: no filter for {platform.machine()}")
    program = seccomp_program()
    filters = (Seccomp.Filter * len(program))(*program)
    prog = Seccomp.Program(len(program), ctypes.cast(filters, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(Landlock.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.syscall(
        Seccomp.SYSCALL, Seccomp.SET_MODE_FILTER, Seccomp.FILTER_FLAG_TSYNC, ctypes.byref(prog)
    ):
        raise ConfinementError(f"seccomp: {os.strerror(ctypes.get_errno())}")
    return f"seccomp (no {', no '.join(Seccomp.DENIED)})"
