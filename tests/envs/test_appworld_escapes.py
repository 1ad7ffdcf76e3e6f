"""Agent code that gets past AppWorld's guard (``getattr`` imports, ``ctypes``) against its
executor's confinement, through the env API on the synthetic world.

Each cell tries one way of reaching the host or the world's truth; the test asserts the
cell failed the way named, the host is unchanged, and the next cell still runs. Agent code
runs in an executor process apart from the world and its evaluator (``executor.py``).
"""

import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from test_appworld import make

from envs.appworld.env import REPO_ROOT
from envs.appworld.world import synthetic_world
from envs.core import AgentAction

TASK = "5a2ce0b_1"
# past the AST guard: a module imported by a computed name. ``posix``, not ``os``: while a
# cell runs, AppWorld's guard swaps os.fork, os.chmod... for functions that do nothing.
IMPORT = "m = lambda name: getattr(__builtins__, '__imp' + 'ort__')(name)\n"
OS = IMPORT + "o = m('po' + 'six')\n"
LIBC = IMPORT + "c = m('ctypes')\nlibc = c.CDLL(None, use_errno=True)\n"
# a libc call's result and errno, printed: C calls fail by returning -1, not by raising
CALL = "r = {call}\nprint('result', r, 'errno', c.get_errno())\n"
REFUSED = "result -1 errno 1\n"  # EPERM


@pytest.fixture(scope="module")
def env():
    if not sys.platform.startswith("linux"):
        pytest.skip("the confinement is Linux's")
    env = make(execution_timeout_s=5, max_steps=200)  # two steps a cell
    yield env
    env.close()


@pytest.fixture
def host(tmp_path):
    """A host file, a host directory, a UDP and a unix listener, a process to signal."""
    target = tmp_path / "host.txt"
    target.write_text("host")
    os.chmod(target, 0o644)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    unix_path = tmp_path / "host.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(unix_path))
    unix.listen(1)
    unix.settimeout(0.2)
    sleeper = subprocess.Popen(["sleep", "60"])
    stat = target.stat()
    yield {
        "file": target,
        "dir": tmp_path,
        "marker": tmp_path / "escaped",
        "udp": udp,
        "unix": unix,
        "unix_path": unix_path,
        "sleeper": sleeper,
        "stat": (stat.st_mode, stat.st_uid, stat.st_gid, stat.st_mtime_ns),
    }
    sleeper.kill()
    sleeper.wait()
    udp.close()
    unix.close()


def _cells(h: dict) -> dict[str, tuple[str, str]]:
    """name -> (cell, what its output must contain)."""
    f, marker, sock = str(h["file"]), str(h["marker"]), str(h["unix_path"])
    sh = f"['/bin/sh', '-c', 'echo x > {marker}']"
    return {
        # processes, by every route we know
        "fork": (OS + "o.fork()", "PermissionError"),
        "posix_spawn": (OS + f"o.posix_spawn('/bin/sh', {sh}, {{}})", "PermissionError"),
        "execv replaces the server": (OS + f"o.execv('/bin/sh', {sh})", "PermissionError"),
        # glibc's system() says 127 << 8 when it cannot start the shell
        "system": (OS + f"print('status', o.system('echo x > {marker}'))", "status 32512"),
        "forkpty": (OS + "o.forkpty()", "PermissionError"),
        "posix_spawnp": (OS + f"o.posix_spawnp('sh', {sh}, {{}})", "PermissionError"),
        "libc system": (LIBC + CALL.format(call=f"libc.system(b'echo x > {marker}')"), "result"),
        # sockets of every family
        "udp to a host listener": (
            IMPORT + f"m('socket').socket(2, 2).sendto(b'x', ('127.0.0.1', {h['udp_port']}))",
            "PermissionError",
        ),
        "tcp": (
            IMPORT + "m('socket').create_connection(('127.0.0.1', 9), timeout=1)",
            "PermissionError",
        ),
        "pathname unix socket": (
            IMPORT + f"m('socket').socket(1, 1).connect({sock!r})",
            "PermissionError",
        ),
        "abstract unix socket": (
            IMPORT + "m('socket').socket(1, 1).connect('\\0toolgym-probe')",
            "PermissionError",
        ),
        "netlink": (IMPORT + "m('socket').socket(16, 3, 0)", "PermissionError"),
        "raw libc socket": (LIBC + CALL.format(call="libc.socket(2, 2, 0)"), REFUSED),
        # the host's files: contents and metadata
        "write through an alias": (f"f = open\nf({f!r}, 'w').write('x')", "PermissionError"),
        "write through a workdir symlink": (
            OS + f"o.symlink({f!r}, 'link')\nopen_ = open\nopen_('link', 'w').write('x')",
            "PermissionError",
        ),
        # Landlock refuses a link across its hierarchies as EXDEV
        "hard link into the workdir": (OS + f"o.link({f!r}, 'hard')", "cross-device link"),
        "rename": (OS + f"o.rename({f!r}, 'moved')", "PermissionError"),
        "truncate": (OS + f"o.truncate({f!r}, 0)", "PermissionError"),
        "chmod": (OS + f"o.chmod({f!r}, 0o777)", "PermissionError"),
        "chown": (OS + f"o.chown({f!r}, 1, 1)", "PermissionError"),
        "utime": (OS + f"o.utime({f!r}, (0, 0))", "PermissionError"),
        "setxattr": (OS + f"o.setxattr({f!r}, 'user.x', b'1')", "PermissionError"),
        "write to /dev/shm": ("f = open\nf('/dev/shm/toolgym-probe', 'w')", "PermissionError"),
        # the world's truth and the host's files
        "another task's answer": (
            f"f = open\nprint(f({str(_truth('5a1ce0a_1') / 'answer.json')!r}).read())",
            "PermissionError",
        ),
        "this task's evaluation": (
            f"f = open\nprint(f({str(_truth(TASK) / 'evaluation.py')!r}).read())",
            "PermissionError",
        ),
        "the project's files": (
            f"f = open\nprint(f({str(REPO_ROOT / 'README.md')!r}).read())",
            "PermissionError",
        ),
        "/etc/passwd": ("f = open\nprint(f('/etc/passwd').read())", "PermissionError"),
        "listing /tmp": (OS + "print(o.listdir('/tmp'))", "PermissionError"),
        # other processes and the kernel
        "signal another process": (
            OS + f"o.kill({h['sleeper'].pid}, 9)",
            "PermissionError",
        ),
        "the parent's environment": (
            f"f = open\nprint(f('/proc/{os.getpid()}/environ').read())",
            "PermissionError",
        ),
        "ptrace attach": (
            LIBC + CALL.format(call=f"libc.ptrace(16, {os.getpid()}, 0, 0)"),
            REFUSED,
        ),
        "unshare": (LIBC + CALL.format(call="libc.unshare(0x10000000)"), REFUSED),
        "mount": (
            LIBC + CALL.format(call="libc.mount(b'none', b'/mnt', b'tmpfs', 0, None)"),
            REFUSED,
        ),
        "bpf": (LIBC + CALL.format(call="libc.syscall(321, 0, 0, 0)"), REFUSED),
        "System V shared memory": (
            LIBC + CALL.format(call="libc.shmget(0, 4096, 0o1600)"),
            REFUSED,
        ),
        "a POSIX message queue": (
            LIBC + CALL.format(call="libc.syscall(240, b'/toolgym-probe', 0o100 | 2, 0o600, 0)"),
            REFUSED,
        ),
        # the world's own objects through the API proxy
        "the collection's own methods": ("apis.supervisor.clear()", "Exception"),
        # resources
        "memory": ("x = bytearray(8 * 1024**3)", "MemoryError"),
        "a file over the size cap": (
            "f = open\nf('big', 'wb').write(bytes(100 * 1024**2))",
            "Error",
        ),
    }


def _truth(task_id: str):
    return synthetic_world() / "data" / "tasks" / task_id / "ground_truth"


def test_escape_cells_fail_and_leave_the_host_as_it_was(env, host):
    host["udp_port"] = host["udp"].getsockname()[1]
    accepted: list[object] = []
    listener = threading.Thread(target=lambda: _accept(host["unix"], accepted))
    listener.start()
    env.reset(options={"task_id": TASK})
    failures = []
    for name, (code, expected) in _cells(host).items():
        obs, _, terminated, truncated, _ = env.step(AgentAction(content=code))
        (message,) = obs["messages"]
        if expected not in message["content"] or terminated or truncated:
            failures.append(f"{name}: {message['content'][-300:]!r}")
        obs, *_ = env.step(AgentAction(content="print('still here')"))
        assert obs["messages"][0]["content"] == "still here\n", f"after {name}"
    obs, *_ = env.step(AgentAction(content="print(len(apis.supervisor.show_account_passwords()))"))
    assert obs["messages"][0]["content"].strip().isdigit()  # the world's apps are intact
    listener.join()
    assert failures == [], "\n".join(failures)
    stat = host["file"].stat()
    assert host["file"].read_text() == "host"
    assert (stat.st_mode, stat.st_uid, stat.st_gid, stat.st_mtime_ns) == host["stat"]
    assert not host["marker"].exists() and not (host["dir"] / "moved").exists()
    assert not os.path.exists("/dev/shm/toolgym-probe")
    assert host["sleeper"].poll() is None  # still running
    assert accepted == []
    try:
        datagram = host["udp"].recv(16)
    except TimeoutError:
        datagram = None
    assert datagram is None


def _accept(listener: socket.socket, accepted: list[object]) -> None:
    try:
        accepted.append(listener.accept())
    except (TimeoutError, OSError):
        pass


def test_the_server_says_which_protections_are_active(env):
    env.reset(options={"task_id": TASK})
    line = env._server.protections
    assert line == (env._server.workdir / "protections").read_text()
    server, agent = line.split("; agent code: ")
    assert server.startswith("server: Landlock ABI") and "no other process's /proc" in server
    assert agent.startswith("Landlock ABI") and "reads only of the Python runtime" in agent
    assert "seccomp (no processes, no sockets" in agent and "no IPC" in agent


def test_a_flood_of_output_is_cut_by_the_executor(env):
    env.reset(options={"task_id": TASK})
    obs, *_ = env.step(AgentAction(content="print('x' * 50_000_000)"))
    output = env.episode_record()["cells"][-1]["output"]
    assert output.endswith("[output cut at 1000000 characters]") and len(output) < 1_000_100
    assert len(obs["messages"][0]["content"]) < 13_000  # what the agent sees: the env's cut


def test_the_executor_holds_no_secret(monkeypatch):
    canary = "sk-ant-toolgym-canary"
    monkeypatch.setenv("ANTHROPIC_API_KEY", canary)  # in toolgym's environment, as in use
    env = make(max_servers=1, execution_timeout_s=7)
    try:
        env.reset(options={"task_id": TASK})
        cells = [
            OS + "print(o.environ)",
            "f = open\nprint(f('/proc/self/environ').read())",
            f"f = open\nprint(f('/proc/{env._server.pid}/environ').read())",
            f"f = open\nprint(f('/proc/{os.getpid()}/environ').read())",
        ]
        for code in cells:
            obs, *_ = env.step(AgentAction(content=code))
            assert canary not in obs["messages"][0]["content"]
        (message,) = obs["messages"]
        assert "PermissionError" in message["content"]
    finally:
        env.close()


def test_the_sandbox_can_be_turned_off_only_by_saying_unsafe(caplog):
    caplog.set_level(logging.INFO)
    env = make(seccomp=False, unsafe_no_sandbox=True, max_servers=1)
    try:
        env.reset(options={"task_id": TASK})
        assert "seccomp" not in env._server.protections
        assert f"AppWorld sandbox: {env._server.protections}" in caplog.text
    finally:
        env.close()


PATCH_THE_EVALUATOR = """
import appworld
patched = []
for module, name, value in [
    ("appworld.evaluator", "evaluate_task", lambda *a, **k: None),
    ("appworld.common.evaluation", "TestTracker", None),
    ("appworld.environment", "AppWorld", None),
]:
    try:
        setattr(m(module), name, value)
        patched.append(name)
    except BaseException as error:
        patched.append(type(error).__name__)
print(patched)
"""


def test_patching_appworld_from_agent_code_leaves_the_evaluator_alone(env):
    env.reset(options={"task_id": "5a1ce0a_1"})
    obs, *_ = env.step(AgentAction(content=IMPORT + PATCH_THE_EVALUATOR))
    assert obs["messages"][0]["content"].startswith("[")  # the cell ran
    wrong = "apis.supervisor.complete_task(answer=3)"
    _, reward, terminated, _, info = env.step(AgentAction(content=wrong))
    assert terminated and reward == 0.0 and not info["success"]
    env.reset(options={"task_id": "5a1ce0a_1"})  # the next episode on the same pool
    _, reward, terminated, _, _ = env.step(AgentAction(content=wrong))
    assert terminated and reward == 0.0


def _processes_in(workdir: str) -> list[int]:
    """Live processes whose command line names ``workdir`` (the fork server, executors)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if workdir.encode() in cmdline.read():
                    with open(f"/proc/{entry}/stat") as stat:
                        if stat.read().rsplit(") ", 1)[1][0] != "Z":
                            found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_no_executor_outlives_its_server(how):
    env = make(max_servers=1, execution_timeout_s=5)
    env.reset(options={"task_id": TASK})
    env.step(AgentAction(content="print(1)"))  # an executor is running this episode
    server = env._server
    workdir = str(server.workdir / "executors")
    assert len(_processes_in(workdir)) >= 2  # the fork server and the episode's executor
    if how == "stopped":
        server.stop()
    else:
        os.kill(server.pid, 9)
    deadline = time.monotonic() + 10
    while _processes_in(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_in(workdir) == []
    env.close()


@pytest.mark.slow
def test_a_hundred_episodes_of_escape_attempts_leave_no_stray_process():
    env = make(max_servers=1, execution_timeout_s=1, max_steps=200)
    attempts = [
        OS + "o.fork()",
        OS + "o.forkpty()",
        OS + "o.posix_spawn('/bin/sleep', ['sleep', '60'], {})",
        LIBC + "libc.system(b'sleep 60 &')",
    ]
    try:
        for episode in range(100):
            env.reset(options={"task_id": TASK})
            workdir = str(env._server.workdir / "executors")
            for code in attempts:
                env.step(AgentAction(content=code))
            if episode % 25 == 0:  # a cell its alarm cannot stop: its executor is killed
                env.step(AgentAction(content="sum(range(10**13))"))
            assert len(_processes_in(workdir)) <= 2, episode  # the fork server, this executor
    finally:
        env.close()
