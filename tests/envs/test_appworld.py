"""AppWorld specifics on the synthetic world, through the real AppWorld engine and evaluator:
gold and wrong solutions, TGC/SGC against AppWorld's own Metric, the safety guard and time
limits, server failures, isolation, recycling, loopback and token, configuration errors.

Servers start once per pool settings and are shared by the tests (and by the conformance
suite) in this process; the tests that need a fresh server make distinct settings.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium
import pytest
import yaml

from agents.env_pool import EnvSpec, LocalEnvPool
from envs import ENV_IDS
from envs.appworld.env import REPO_ROOT, AppWorldEnv, AppWorldEnvConfig
from envs.appworld.metrics import goal_completion
from envs.appworld.server import PortInUseError
from envs.appworld.world import APPWORLD_PYTHON, synthetic_world
from envs.config import ConfigError, build_config
from envs.core import AgentAction, ToolCall
from envs.factory import make_env

SPLIT = "test_normal"
TASKS = ["5a1ce0a_1", "5a1ce0a_2", "5a2ce0b_1", "5a2ce0b_2", "5a3ce0c_1", "5a3ce0c_2"]
NOTE_LOGIN = """
pw = {a["account_name"]: a["password"] for a in apis.supervisor.show_account_passwords()}
token = apis.simple_note.login(username="maya.ortiz@gmail.com", password=pw["simple_note"])
token = token["access_token"]
notes = apis.simple_note.search_notes(access_token=token, page_limit=20)
def note_id(title):
    return next(n["note_id"] for n in notes if n["title"] == title)
"""
# One plausible wrong solution per task; each completes the task, so the episode ends.
WRONG = {
    "5a1ce0a_1": "apis.supervisor.complete_task(answer=3)",
    "5a1ce0a_2": "apis.supervisor.complete_task(answer='Weeknight curry')",
    "5a2ce0b_1": NOTE_LOGIN
    + "apis.simple_note.create_note(access_token=token, title='Packing list', content='socks')\n"
    + "apis.supervisor.complete_task()",
    "5a2ce0b_2": NOTE_LOGIN
    + "apis.simple_note.delete_note(access_token=token, note_id=note_id('Book list'))\n"
    + "apis.supervisor.complete_task()",
    "5a3ce0c_1": NOTE_LOGIN
    + "apis.simple_note.add_content_to_note(access_token=token, note_id="
    + "note_id('Emergency contacts'), append_or_prepend='append', added_content='Rosa Diaz')\n"
    + "apis.supervisor.complete_task()",
    "5a3ce0c_2": "apis.supervisor.complete_task(answer='rosa.diaz@gmail.com')",
}


def make(**options) -> AppWorldEnv:
    return AppWorldEnv(**{"data_root": str(synthetic_world()), "split": SPLIT, **options})


def play(env: AppWorldEnv, task_id: str, actions: list[AgentAction]) -> tuple[float, dict]:
    env.reset(seed=0, options={"task_id": task_id})
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return reward, info
    raise AssertionError(f"{task_id}: the actions did not end the episode")


@pytest.fixture(scope="module")
def env():
    env = make(execution_timeout_s=1)
    yield env
    env.close()


@pytest.fixture(scope="module")
def outcomes(env):
    """Final (reward, info) of a gold and a wrong episode of every synthetic task."""
    return {
        (task_id, kind): play(env, task_id, actions)
        for task_id in TASKS
        for kind, actions in (
            ("gold", env.gold_actions(task_id)),
            ("wrong", [AgentAction(content=WRONG[task_id])]),
        )
    }


def test_split_and_task_metadata(env):
    assert [t.task_id for t in env.tasks()] == TASKS
    assert {t.task_id: t.category for t in env.tasks()}["5a3ce0c_1"] == "difficulty_3"
    _, info = env.reset(options={"task_id": "5a3ce0c_1"})
    assert info["difficulty"] == 3
    assert info["facets"] == {"app": ["phone", "simple_note"], "scenario": ["5a3ce0c"]}
    assert make(split="train").tasks()[0].task_id == "5a1ce0a_1"


@pytest.mark.parametrize("task_id", TASKS)
def test_gold_solution_scores_one(outcomes, task_id):
    reward, info = outcomes[(task_id, "gold")]
    assert reward == 1.0 and info["success"] and info["test_pass_fraction"] == 1.0
    assert info["termination_reason"] == "task_completed" and info["env_failure"] is None


@pytest.mark.parametrize("task_id", TASKS)
def test_wrong_solution_scores_zero(outcomes, task_id):
    reward, info = outcomes[(task_id, "wrong")]
    assert reward == 0.0 and not info["success"]
    # the goal test fails; the "nothing else changed" test still passes
    assert info["test_pass_fraction"] == 0.5 and info["num_tests"] == 2
    assert info["failed_tests"] and info["reward_components"] == {"test_pass_fraction": 0.5}


def test_tgc_and_sgc_on_a_mixed_set_match_appworlds_own_metric(outcomes):
    # scenario 5a1ce0a all right; 5a2ce0b and 5a3ce0c half right
    kinds = dict(zip(TASKS, ["gold", "gold", "gold", "wrong", "wrong", "gold"], strict=True))
    infos = {t: outcomes[(t, k)][1] for t, k in kinds.items()}
    ours = goal_completion({t: i["success"] for t, i in infos.items()}, TASKS)
    assert (ours.tgc, ours.sgc, ours.num_tasks, ours.num_scenarios) == (66.7, 33.3, 6, 3)
    trackers = {
        t: {
            "success": i["success"],
            "passes": [{"requirement": r} for r in i["passed_tests"]],
            "failures": [{"requirement": r} for r in i["failed_tests"]],
        }
        for t, i in infos.items()
    }
    script = (
        "import json, sys; from appworld.evaluator import Metric; "
        "print(json.dumps(Metric._compute_metrics(json.load(sys.stdin))['aggregate']))"
    )
    result = subprocess.run(
        [str(APPWORLD_PYTHON), "-c", script],
        input=json.dumps(trackers),
        capture_output=True,
        text=True,
        env={"PYTHON_DOTENV_DISABLED": "1", "PATH": os.environ["PATH"]},
        check=True,
    )
    theirs = json.loads(result.stdout)
    assert (theirs["task_goal_completion"], theirs["scenario_goal_completion"]) == (
        ours.tgc,
        ours.sgc,
    )


def test_goal_completion_refuses_outcomes_that_do_not_cover_the_split():
    with pytest.raises(ValueError, match="missing"):
        goal_completion({"5a1ce0a_1": True}, TASKS[:2])


IMPORT_OS = "o = getattr(__builtins__, '__imp' + 'ort__')('o' + 's')\n"  # past the AST guard


def test_escapes_get_error_observations_and_a_time_limit(env, tmp_path):
    marker = tmp_path / "escaped"
    env.reset(options={"task_id": "5a2ce0b_1"})
    attempts = {
        "import os\nos.getcwd()": "not allowed: os",
        "import subprocess": "not allowed: subprocess",
        f"open({str(marker)!r}, 'w').write('x')": "not allowed: builtins.open",
        "exec('x = 1')": "not allowed: builtins.exec",
        "while True:\n    pass": "timed out after 1 seconds",
        # what gets past AppWorld's guard meets Landlock
        f"f = open\nf({str(marker)!r}, 'w').write('x')": "PermissionError",
        IMPORT_OS + f"o.mkdir({str(tmp_path / 'made')!r})": "PermissionError",
        "s = getattr(__builtins__, '__imp' + 'ort__')('socket').socket()\n"
        "s.connect(('127.0.0.1', 9))": "PermissionError",
    }
    for code, expected in attempts.items():
        obs, _, terminated, truncated, info = env.step(AgentAction(content=code))
        (message,) = obs["messages"]
        assert message["content"].startswith("Execution failed.") and expected in message["content"]
        assert not (terminated or truncated)
    assert info["tool_errors"] == len(attempts) and list(tmp_path.iterdir()) == []
    # a program started past the guard inherits the confinement
    spawn = IMPORT_OS + (
        f"pid = o.posix_spawn('/bin/sh', ['sh', '-c', 'echo x > {marker}'], {{}})\n"
        "print(o.waitstatus_to_exitcode(o.waitpid(pid, 0)[1]))"
    )
    obs, *_ = env.step(AgentAction(content=spawn))
    assert obs["messages"][0]["content"] != "0\n" and not marker.exists()
    obs, *_ = env.step(AgentAction(content="print('still here')"))
    assert obs["messages"][0]["content"] == "still here\n"


def test_code_the_alarm_cannot_stop_gets_its_executor_killed_and_the_server_lives_on():
    env = make(execution_timeout_s=1, max_servers=1)
    env.reset(options={"task_id": "5a1ce0a_1"})
    pid = env._server.pid
    started = time.monotonic()
    obs, reward, terminated, truncated, info = env.step(
        AgentAction(content="sum(range(10**13))")  # one C call: no signal handler runs
    )
    assert time.monotonic() - started < 10
    assert truncated and not terminated and reward == 0.0
    assert info["termination_reason"] == "execution_timeout" and info["env_failure"] is None
    assert "did not end within 1 s" in obs["messages"][0]["content"]
    assert play(env, "5a1ce0a_1", env.gold_actions("5a1ce0a_1"))[0] == 1.0
    assert env._server is None or env._server.pid == pid  # the same server, still serving
    assert _running(pid)
    env.close()


def test_a_dead_server_is_an_env_failure_and_is_replaced(env):
    env.reset(options={"task_id": "5a2ce0b_1"})
    os.kill(env._server.pid, signal.SIGKILL)
    obs, reward, terminated, truncated, info = env.step(AgentAction(content="print(1)"))
    assert truncated and not terminated and reward == 0.0
    assert info["termination_reason"] == "env_failure" and "exited" in info["env_failure"]
    assert "server failed" in obs["messages"][-1]["content"]
    assert play(env, "5a2ce0b_1", env.gold_actions("5a2ce0b_1"))[0] == 1.0


def test_a_stopped_server_is_an_env_failure_not_the_agents_timeout():
    env = make(execution_timeout_s=1, request_timeout_s=2.0)
    env.reset(options={"task_id": "5a2ce0b_1"})
    pid = env._server.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        obs, reward, terminated, truncated, info = env.step(AgentAction(content="print(1)"))
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGCONT)
    assert truncated and reward == 0.0
    assert info["termination_reason"] == "env_failure" and "stopped" in info["env_failure"]
    assert play(env, "5a2ce0b_1", env.gold_actions("5a2ce0b_1"))[0] == 1.0
    env.close()


def test_idle_servers_that_died_are_replaced_on_reset():
    a, b = make(), make()
    for e in (a, b):
        e.reset(options={"task_id": "5a2ce0b_1"})
    servers = [a._server, b._server]
    pids = [s.pid for s in servers]
    a.close()
    b.close()  # both servers now idle in the pool
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # dead as the pool sees it (waitpid): a killed multi-threaded server shows its leader
    # as a zombie in /proc before its other threads have exited and it can be reaped
    deadline = time.monotonic() + 30
    while any(s.alive for s in servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(s.alive for s in servers)
    fresh = make()
    fresh.reset(options={"task_id": "5a2ce0b_1"})
    assert fresh._server.pid not in pids
    assert play(fresh, "5a2ce0b_1", fresh.gold_actions("5a2ce0b_1"))[0] == 1.0
    fresh.close()


def test_train_and_held_out_envs_never_share_servers(env):
    train, again = make(split="train"), make()
    assert train.pool is not env.pool and again.pool is env.pool
    train.close()
    again.close()


def test_concurrent_episodes_are_isolated(env):
    a, b = env, make()
    a.reset(options={"task_id": "5a2ce0b_1"})
    b.reset(options={"task_id": "5a2ce0b_1"})
    assert a._server is not b._server
    assert a._server.experiment_name != b._server.experiment_name
    (gold,) = a.gold_actions("5a2ce0b_1")
    # b writes the wrong note first; a's world must not see it
    _, reward_b, *_ = b.step(AgentAction(content=WRONG["5a2ce0b_1"]))
    _, reward_a, *_ = a.step(gold)
    assert (reward_a, reward_b) == (1.0, 0.0)
    b.close()


def test_env_pool_steps_appworld_envs_concurrently_with_sequential_results():
    spec = EnvSpec({"name": "appworld", "data_root": str(synthetic_world()), "split": SPLIT})
    pool = LocalEnvPool(spec, 2)
    jobs = {1: ("5a2ce0b_1", 1), 0: ("5a1ce0a_1", 0)}
    (gold,) = pool.workers[0].env.gold_actions("5a1ce0a_1")
    steps = [
        {
            1: AgentAction(content="print(apis.supervisor.show_profile()['first_name'])"),
            0: AgentAction(content="x = 1"),
        },
        {0: gold, 1: AgentAction(content=WRONG["5a2ce0b_1"])},
    ]
    sequential = [{s: pool.workers[s].reset(*job) for s, job in jobs.items()}]
    sequential += [{s: pool.workers[s].step(a) for s, a in actions.items()} for actions in steps]
    # No slot's call goes on before the other's has started: one after another would time out.
    both_in = threading.Barrier(2, timeout=10)
    for worker in pool.workers:
        for name in ("reset", "step"):
            setattr(worker.env, name, _after(both_in, getattr(worker.env, name)))
    concurrent = [pool.reset(jobs)] + [pool.step(actions) for actions in steps]
    assert [list(r) for r in concurrent] == [[1, 0], [1, 0], [0, 1]]
    assert concurrent == sequential
    assert [sequential[-1][s][1] for s in (0, 1)] == [1.0, 0.0]
    # A worker's exception surfaces, and only once the other slot's call has ended.
    pool.reset(jobs)
    with pytest.raises(TypeError, match="AgentAction"):
        pool.step({1: "x = 1", 0: gold})
    assert pool.workers[0].env._done and pool.workers[0].env._server is None
    pool.close()


def _after(barrier: threading.Barrier, call):
    def wrapped(*args, **kwargs):
        barrier.wait()
        return call(*args, **kwargs)

    return wrapped


def test_fresh_servers_hold_no_secrets_are_recycled_and_shut_down_cleanly(monkeypatch):
    monkeypatch.setenv("TOOLGYM_TEST_SECRET", "s3cret")
    env = make(episodes_per_server=2, lease_timeout_s=5.0)  # own settings: own, new pool
    env.reset(options={"task_id": "5a1ce0a_1"})
    first, first_pid = env._server, env._server.pid
    with open(f"/proc/{first_pid}/environ") as environ:
        variables = environ.read()
    assert "APPWORLD_ROOT" in variables and "s3cret" not in variables
    env.reset(options={"task_id": "5a1ce0a_1"})
    assert env._server is first
    env.reset(options={"task_id": "5a1ce0a_1"})
    assert env._server is not first and not _running(first_pid)
    assert not first.workdir.exists()
    second, second_pid = env._server, env._server.pid
    env.pool.shutdown()
    assert not _running(second_pid) and not second.workdir.exists()


def test_observations_are_truncated_but_the_record_is_not_and_budget_truncates():
    env = make(max_observation_chars=50, max_steps=2)
    env.reset(options={"task_id": "5a2ce0b_1"})
    obs, _, terminated, truncated, _ = env.step(AgentAction(content="print('x' * 200)"))
    content = obs["messages"][0]["content"]
    assert not (terminated or truncated) and content.endswith("[truncated 151 chars]")
    assert env.episode_record()["cells"][0]["output"] == "x" * 200 + "\n"
    _, reward, terminated, truncated, info = env.step(AgentAction(content="x = 1"))
    assert truncated and not terminated and reward == 0.0
    assert info["termination_reason"] == "max_steps" and info["num_tests"] == 2
    env.close()


def test_tool_call_form_runs_the_same_cell(env):
    env.reset(options={"task_id": "5a1ce0a_1"})
    action = AgentAction(
        content="Let me look.",
        tool_calls=(ToolCall("execute_python", {"code": "print(2 + 2)"}, "c1"),),
    )
    obs, *_ = env.step(action)
    assert obs["messages"] == [
        {"role": "tool", "name": "execute_python", "tool_call_id": "c1", "content": "4\n"}
    ]


def test_server_listens_on_loopback_only_and_wants_its_token(env):
    env.reset(options={"task_id": "5a1ce0a_1"})
    port = env._server.port
    listening = [
        line.split()[1]
        for line in open("/proc/net/tcp").read().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port
    ]
    assert listening == [f"0100007F:{port:04X}"]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("POST", "/execute", json.dumps({"task_id": "5a1ce0a_1", "code": "1"}))
    assert connection.getresponse().status == 403


def test_a_taken_port_is_a_clear_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = make(port=port, max_servers=1)
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} is already in use"):
            env.reset(options={"task_id": "5a1ce0a_1"})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_step": 3}, r"unknown option 'max_step' \(did you mean 'max_steps'\?\)"),
        ({"split": "validation"}, "no split 'validation'"),
        ({"max_steps": 0}, "at least 1"),
        ({"data_root": "/nonexistent"}, "appworld download data"),
        ({"appworld_python": "/nonexistent/python"}, "no AppWorld venv"),
        ({"seccomp": False}, "seccomp=false lets agent code .* unsafe_no_sandbox=true"),
        ({"landlock": False, "seccomp": False}, "landlock=false and seccomp=false"),
    ],
)
def test_configuration_mistakes_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        AppWorldEnv(**{"data_root": str(synthetic_world()), "split": SPLIT, **options})


def test_yaml_config_states_the_defaults():
    cfg = yaml.safe_load((REPO_ROOT / "configs" / "env" / "appworld.yaml").read_text())
    assert cfg.pop("name") == "appworld"
    assert build_config(AppWorldEnvConfig, cfg, "appworld") == AppWorldEnvConfig()


def test_unknown_task_and_misuse(env):
    with pytest.raises(ConfigError, match="unknown AppWorld task_id"):
        env.reset(options={"task_id": "nope_1"})
    with pytest.raises(ConfigError, match="APPWORLD_ROOT"):
        AppWorldEnv(split=SPLIT, data_root="")
    env.reset(options={"task_id": "5a1ce0a_1"})
    with pytest.raises(TypeError, match="AgentAction"):
        env.step("print(1)")


def test_factory_and_gymnasium_make_with_its_checkers():
    built = make_env({"name": "appworld", "data_root": str(synthetic_world()), "split": SPLIT})
    assert isinstance(built, AppWorldEnv)
    wrapped = gymnasium.make(ENV_IDS["appworld"], data_root=str(synthetic_world()), split=SPLIT)
    wrapped.reset(seed=0)
    _, _, terminated, _, info = wrapped.step(AgentAction(content="###STOP###"))
    assert terminated and info["termination_reason"] == "agent_stop"
    wrapped.close()


def test_env_modules_import_neither_appworld_nor_torch():
    code = "import sys, envs.appworld.env; print(sorted({'appworld', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_server_exits_when_its_parent_dies():
    code = (
        "import sys, time; from envs.appworld.env import AppWorldEnv; "
        f"env = AppWorldEnv(data_root={str(synthetic_world())!r}, split={SPLIT!r}); "
        "env.reset(options={'task_id': '5a1ce0a_1'}); "
        "print(env._server.pid, env._server.workdir, flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, workdir = parent.stdout.readline().split()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _running(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(int(pid)) and list(Path(workdir).iterdir()) == []
    Path(workdir).rmdir()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_labels_declare_the_expected_answer_so_the_sanitizer_masks_it(env):
    # answer.json of the synthetic world: a string, a number, null (not a question)
    assert env.task_labels("5a1ce0a_2").answers == ("Sourdough starter",)
    assert env.task_labels("5a1ce0a_1").answers == ("2",)
    assert env.task_labels("5a2ce0b_1").answers == ()
    assert env.task_labels("5a2ce0b_1").gold_calls  # the solution cell
