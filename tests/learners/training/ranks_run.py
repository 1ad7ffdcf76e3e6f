"""Trains a tiny GRPO run whose sibling groups are always mixed, alone or as one of the
learner ranks torchrun started (tests/learners/training/test_distributed.py runs it both ways).

    python tests/learners/training/ranks_run.py RUN_DIR STEPS
    torchrun --nproc_per_node=2 tests/learners/training/ranks_run.py RUN_DIR STEPS

A random tiny model solves a task either always or never, so its groups carry no
gradient. The rollouts are the real ones; only their rewards are set afterwards, 1 for
even siblings and 0 for odd ones, so every group is mixed and the update has work to do.
"""

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import learners.training.train
from learners.cli import train_one

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
OVERRIDES = [
    "env=airline_mini",
    "model=tiny_random",
    "learner=grpo",
    "train.autocast=float32",  # the same arithmetic however the groups are split
    "train.groups_per_step=3",  # ranks of 2 get 2 groups and 1: unequal shares
    "train.dynamic_sampling=false",
    "train.eval_tasks=2",
    "eval_batch=2",
    "rollout.n=2",
    "rollout.sampling.max_new_tokens=8",
]


def mixed_rollouts(*args, **kwargs):
    groups = rollout_groups(*args, **kwargs)
    for group in groups:
        for k, episode in enumerate(group.episodes):
            episode.reward = float(k % 2 == 0)
    return groups


if __name__ == "__main__":
    run_dir, steps = Path(sys.argv[1]), int(sys.argv[2])
    rollout_groups = learners.training.train.rollout_groups
    learners.training.train.rollout_groups = mixed_rollouts
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        c = compose("train", overrides=[*OVERRIDES, f"train.steps={steps}"])
    train_one(OmegaConf.to_container(c, resolve=True), run_dir)
