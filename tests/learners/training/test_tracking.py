"""Tracking backends write what was logged, read back from their files with the real
packages (TensorBoard event files, W&B offline ``.wandb`` logs); none needs a network."""

import json
import struct
import sys
from pathlib import Path

import pytest
from learner_helpers import config
from tensorboardX.proto.event_pb2 import Event
from wandb.proto.wandb_internal_pb2 import Record

from envs.config import ConfigError, build_config
from learners.cli import train_one
from learners.training.tracking import TrackingConfig, make_trackers

RECORD = {"env": "airline_mini", "learner": "grpo", "seed": 3, "config": {"train": {"lr": 0.5}}}
STEPS = [
    {"step": 1, "rollout/success": 0.25, "train/grad_norm": 2.0, "note": "skipped"},
    {"step": 2, "rollout/success": 0.5, "train/grad_norm": 1.0},
]


def tensorboard_scalars(run_dir):
    """{(tag, step): value} from a TFRecord event file: per record a uint64 length, its
    crc, the data, the data's crc."""
    (path,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
    data, pos, scalars = path.read_bytes(), 0, {}
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        pos += 12
        event = Event.FromString(data[pos : pos + length])
        pos += length + 4
        for value in event.summary.value:
            scalars[value.tag, event.step] = value.simple_value
    return scalars


WANDB_HEADER = 7  # ":W&B", magic uint16, version uint8
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path):
    """Records of a ``.wandb`` file: LevelDB-log blocks, each chunk with a header of crc32
    uint32, length uint16, type uint8; a block's tail too short for a header is padding."""
    data, pos, chunks, records = path.read_bytes(), WANDB_HEADER, b"", []
    while pos + WANDB_HEADER <= len(data):
        if BLOCK - pos % BLOCK < WANDB_HEADER:
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        pos += WANDB_HEADER
        chunks += data[pos : pos + length]
        pos += length
        if kind in (FULL, LAST):
            records.append(Record.FromString(chunks))
            chunks = b""
        else:
            assert kind in (FIRST, MIDDLE)
    return records


def wandb_history(records):
    """{step: {key: value}} of the history records, without W&B's own ``_`` keys."""
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {
                "/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item
            }
            history[r.history.step.num] = {k: v for k, v in items.items() if not k.startswith("_")}
    return history


@pytest.fixture
def wandb_env(monkeypatch, tmp_path):
    """W&B's own logs and settings under tmp_path, quiet, whatever the user's setup."""
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)


def log_and_close(config, run_dir, steps):
    trackers = make_trackers(config, run_dir, RECORD)
    for metrics in steps:
        for tracker in trackers:
            tracker.log(metrics["step"], metrics)
    for tracker in trackers:
        tracker.close()


def test_tensorboard_events_hold_the_logged_scalars(tmp_path):
    log_and_close(TrackingConfig(backends=["tensorboard"]), tmp_path, STEPS)
    assert tensorboard_scalars(tmp_path) == {
        ("rollout/success", 1): 0.25,
        ("train/grad_norm", 1): 2.0,
        ("rollout/success", 2): 0.5,
        ("train/grad_norm", 2): 1.0,
    }


def test_wandb_offline_history_and_config_then_resume(tmp_path, wandb_env):
    # enough steps that records cross a 32 KiB block boundary
    many = [{"step": k, "rollout/success": k / 1000, "train/grad_norm": k} for k in range(1, 400)]
    log_and_close(TrackingConfig(backends=["wandb"]), tmp_path, [*STEPS, *many[2:]])
    run_id = (tmp_path / "wandb_run_id").read_text()
    (path,) = (tmp_path / "wandb").glob(f"offline-run-*/run-{run_id}.wandb")
    assert path.stat().st_size > BLOCK
    records = wandb_records(path)
    history = wandb_history(records)
    assert history[1] == {"rollout/success": 0.25, "train/grad_norm": 2.0}  # no step, note
    assert history[399]["rollout/success"] == 0.399
    assert sorted(history) == list(range(1, 400))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.run_id, run.display_name, run.run_group) == (run_id, "grpo-seed3", "airline_mini")
    run_config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert run_config["train"] == {"lr": 0.5}

    # resumed: the same W&B run, continued
    log_and_close(TrackingConfig(backends=["wandb"]), tmp_path, [{"step": 400, "x": 1.0}])
    assert (tmp_path / "wandb_run_id").read_text() == run_id
    resumed = wandb_records(tmp_path / "wandb" / "latest-run" / f"run-{run_id}.wandb")
    assert {r.run.run_id for r in resumed if r.WhichOneof("record_type") == "run"} == {run_id}
    assert wandb_history(resumed)[400] == {"x": 1.0}


def test_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown backends \['mlflow'\]; known"):
        build_config(TrackingConfig, {"backends": ["tensorboard", "mlflow"]}, "tracking")
    with pytest.raises(ConfigError, match="unknown option"):
        build_config(TrackingConfig, {"backend": ["wandb"]}, "tracking")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="needs WANDB_API_KEY"):
        TrackingConfig(backends=["wandb"], wandb_mode="online")
    TrackingConfig(backends=["tensorboard"], wandb_mode="online")  # no W&B, no key needed
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'toolgym\[tracking\]'"):
        make_trackers(TrackingConfig(backends=["tensorboard"]), Path(), RECORD)


def test_training_run_logs_steps_and_evaluation(tmp_path):
    train_one(config("grpo", "train.steps=1", "tracking.backends=[tensorboard]"), tmp_path)
    scalars = tensorboard_scalars(tmp_path)
    (metrics,) = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (evaluation,) = [json.loads(x) for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert scalars["rollout/success", 1] == pytest.approx(metrics["rollout/success"])
    assert scalars["eval/success", 1] == pytest.approx(evaluation["eval/success"])
