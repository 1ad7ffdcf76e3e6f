"""Data-parallel learner ranks over ``torch.distributed``.

``torchrun --nproc_per_node=N -m learners.cli train ...`` starts N ranks. Rank 0 is the
run: it rolls out, assigns credit, evaluates, writes metrics and checkpoints, and syncs
its sampler. Every step it sends the step's groups and credit to all ranks; each rank
backpropagates the loss of its share of the groups (group i goes to rank i mod N), the
gradients are summed across ranks, and every rank takes the same optimizer step. The
loss is scaled by the whole step's token count before the split, so the summed gradient
is the one a single process computes on the same groups (up to summation order).

Gradients are summed by hand after every backward of the step has run: the shared-prefix
pass (:mod:`learners.forward`) calls backward once per micro-batch and once more for the
prefix, which DDP's per-backward reducer does not allow. Ranks talk over gloo; tested on
CPU only (a GPU rank's models go to ``cuda:$LOCAL_RANK``, agents/model.py, untested).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def owns(self, group_index: int) -> bool:
        """Whether this rank backpropagates the group at ``group_index`` of a step."""
        return group_index % self.world == self.rank

    def broadcast(self, value: Any = None) -> Any:
        """Rank 0's ``value`` on every rank (pickled: groups, credit, tensors)."""
        if self.world == 1:
            return value
        box = [value if self.leader else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_gradients(self, model: torch.nn.Module) -> None:
        """Every rank's gradients replaced by their sum over ranks (one flat buffer)."""
        if self.world == 1:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:  # a rank whose share never reached this parameter
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        """Per-key sums over ranks (loss metrics; a key a rank lacks counts as 0)."""
        if self.world == 1:
            return values
        parts: list[dict[str, float]] = [{} for _ in range(self.world)]
        dist.all_gather_object(parts, values)
        totals: dict[str, float] = defaultdict(float)
        for part in parts:
            for key, value in part.items():
                totals[key] += value
        return dict(totals)


def launched_ranks() -> int:
    """How many ranks torchrun started (its ``WORLD_SIZE``); 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def start_ranks(timeout_s: float) -> Ranks:
    """The ranks torchrun started, joined over gloo; a single rank without torchrun.
    ``timeout_s`` bounds how long a rank waits for the others, e.g. while rank 0
    evaluates."""
    if launched_ranks() == 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    return Ranks(rank=dist.get_rank(), world=dist.get_world_size())


def stop_ranks(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
