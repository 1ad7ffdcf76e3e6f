"""A save killed at any point leaves a checkpoint of its step or the one before, which
resume finds (learners/training/checkpoint.py)."""

import shutil
from pathlib import Path

import pytest
import torch

from agents.model import ModelConfig, load_model
from learners.training.checkpoint import load_trainer_state, recover_checkpoint, save_checkpoint


class Killed(BaseException):
    """A kill: not an Exception, so nothing on the way catches it."""


def _kill_at(patch, n: int, model, tokenizer) -> list[int]:
    """Raise :class:`Killed` at the n-th point of a save: before or after each of its
    file-system operations (deletes, renames, writes, the model's and tokenizer's saves)."""
    points = [0]

    def point():
        points[0] += 1
        if points[0] == n:
            raise Killed

    def counted(original):
        def call(*args, **kwargs):
            point()
            out = original(*args, **kwargs)
            point()
            return out

        return call

    patch.setattr(shutil, "rmtree", counted(shutil.rmtree))
    patch.setattr(Path, "rename", counted(Path.rename))
    patch.setattr(Path, "write_text", counted(Path.write_text))
    patch.setattr(torch, "save", counted(torch.save))
    patch.setattr(model, "save_pretrained", counted(model.save_pretrained))
    patch.setattr(tokenizer, "save_pretrained", counted(tokenizer.save_pretrained))
    return points


def test_a_kill_at_every_point_of_a_save_loses_at_most_that_step(tmp_path, monkeypatch):
    model, tokenizer = load_model(ModelConfig(name="tiny-random", dtype="float32"))
    optimizer = torch.optim.AdamW(model.parameters())
    first = tmp_path / "first"
    save_checkpoint(first, model, tokenizer, optimizer, {"step": 1})
    kills = 0
    for n in range(1, 200):
        run = tmp_path / f"kill{n}"
        shutil.copytree(first, run / "checkpoint")
        with monkeypatch.context() as patch:
            points = _kill_at(patch, n, model, tokenizer)
            try:
                save_checkpoint(run / "checkpoint", model, tokenizer, optimizer, {"step": 2})
            except Killed:
                kills += 1
            else:
                assert points[0] < n  # no point left: every one was tried
                break
        recovered = recover_checkpoint(run / "checkpoint")
        assert recovered == run / "checkpoint"
        assert load_trainer_state(recovered)["step"] in (1, 2)
        assert sorted(p.name for p in run.iterdir()) == ["checkpoint"]
        type(model).from_pretrained(recovered)  # complete: it loads
        torch.load(recovered / "optimizer.pt")
    assert kills >= 12  # 6+ operations, killed before and after each


@pytest.mark.parametrize("leftover", [".tmp", ".old"])
def test_recover_keeps_the_newest_complete_checkpoint(tmp_path, leftover):
    path = tmp_path / "checkpoint"
    for name, step in (("checkpoint", 3), ("checkpoint" + leftover, 4)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "trainer_state.json").write_text(f'{{"step": {step}}}')
    incomplete = tmp_path / ("checkpoint.old" if leftover == ".tmp" else "checkpoint.tmp")
    incomplete.mkdir()  # no state file: an unfinished write, never chosen
    assert load_trainer_state(recover_checkpoint(path))["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    assert recover_checkpoint(tmp_path / "none") is None
