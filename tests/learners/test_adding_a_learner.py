"""docs/ADDING_A_LEARNER.md, followed as written: its learner code registers, its yaml
names it, and one real training step with the tiny model runs it through the loop."""

import json
import re
from pathlib import Path

import yaml
from learner_helpers import config

from learners.cli import train_one
from learners.registry import get_learner, known_learners

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "ADDING_A_LEARNER.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_the_guides_learner_trains_one_step(tmp_path):
    (code,) = blocks("python")
    if "vanilla_pg" not in known_learners():
        exec(compile(code, str(GUIDE), "exec"), {"__name__": "learners.vanilla_pg"})
    (learner_yaml,) = blocks("yaml")
    options = yaml.safe_load(learner_yaml)
    entry = get_learner(options["name"])  # the yaml's name is the registered one
    assert entry.make_config({k: v for k, v in options.items() if k != "name"})

    c = config("grpo", "train.steps=1")
    c["learner"] = {**options, "entropy_coef": 0.01}
    train_one(c, tmp_path)
    (step,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/pg", "loss/entropy", "train/grad_norm"} <= set(step)
    assert step["loss/entropy"] > 0
    assert (tmp_path / "eval.jsonl").is_file()
