"""Checkpoints: a loadable model directory plus the training state to resume from.

A save never leaves a window without a complete checkpoint. The new one is written aside
(``<name>.tmp``, its ``trainer_state.json`` last, so a directory holding that file is
complete), the old one renamed away (``<name>.old``), the new one renamed into place, the
old one removed. A kill at any point leaves a complete checkpoint of this step or the one
before under one of the three names; :func:`recover_checkpoint` puts the newest back in
place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "trainer_state.json"


def _aside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    tokenizer,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
) -> Path:
    path = Path(path)
    tmp, old = _aside(path, ".tmp"), _aside(path, ".old")
    recover_checkpoint(path)  # a previous save cut short: its newest complete one in place
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))  # last: marks it complete
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def recover_checkpoint(path: Path) -> Path | None:
    """``path`` holding the newest complete checkpoint among ``path`` and what an
    interrupted save left beside it (None if there is none); the rest is removed."""
    path = Path(path)
    candidates = (path, _aside(path, ".tmp"), _aside(path, ".old"))
    complete = [p for p in candidates if (p / STATE_FILE).is_file()]
    if not complete:
        return None
    newest = max(complete, key=lambda p: load_trainer_state(p)["step"])
    if newest != path:
        shutil.rmtree(path, ignore_errors=True)
        newest.rename(path)
    for leftover in candidates[1:]:
        shutil.rmtree(leftover, ignore_errors=True)
    return path


def load_trainer_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / STATE_FILE).read_text())
