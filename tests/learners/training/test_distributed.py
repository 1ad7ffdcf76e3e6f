"""Learner ranks over torch.distributed (gloo, CPU): two ranks train what one process
trains on the same groups, and a killed two-rank run resumes (learners/training/distributed.py)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from learners.training.checkpoint import load_trainer_state, recover_checkpoint

SCRIPT = Path(__file__).with_name("ranks_run.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(run_dir: Path, steps: int, ranks: int) -> list[str]:
    script = [str(SCRIPT), str(run_dir), str(steps)]
    if ranks == 1:
        return [sys.executable, *script]
    rendezvous = [f"--nproc_per_node={ranks}", "--master_addr=127.0.0.1"]
    return [str(TORCHRUN), *rendezvous, f"--master_port={_free_port()}", *script]


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[3])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}


def _train(run_dir: Path, steps: int, ranks: int) -> None:
    done = subprocess.run(
        _command(run_dir, steps, ranks), capture_output=True, text=True, env=_env(), timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _relative_difference(a: Path, b: Path) -> float:
    x = load_file(a / "checkpoint" / "model.safetensors")
    y = load_file(b / "checkpoint" / "model.safetensors")
    diff = sum(float((x[k] - y[k]).norm() ** 2) for k in x) ** 0.5
    return diff / sum(float(x[k].norm() ** 2) for k in x) ** 0.5


def _steps(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


def test_two_ranks_train_what_one_process_trains(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _train(one, 1, ranks=1)
    _train(two, 1, ranks=2)
    (alone,), (shared,) = _steps(one), _steps(two)
    assert alone["train/grad_norm"] > 0.01  # the mixed groups moved the weights
    assert (
        abs(shared["train/grad_norm"] - alone["train/grad_norm"]) < 1e-5 * alone["train/grad_norm"]
    )
    assert _relative_difference(one, two) < 1e-5
    assert not (two / "checkpoint.tmp").exists()


def test_a_killed_two_rank_run_resumes_and_ends_where_one_process_does(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _train(one, 3, ranks=1)
    run = subprocess.Popen(
        _command(two, 3, ranks=2),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,  # one process group: torchrun and both ranks
    )
    deadline = time.monotonic() + 600
    while recover_checkpoint(two / "checkpoint") is None:  # step 1 saved
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    killed_at = load_trainer_state(recover_checkpoint(two / "checkpoint"))["step"]
    assert killed_at < 3  # killed mid-run
    _train(two, 3, ranks=2)
    assert [s["step"] for s in _steps(two)] == [1, 2, 3]  # no step lost or repeated
    assert _relative_difference(one, two) < 1e-5
