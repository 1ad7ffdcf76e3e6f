"""``toolgym <command> [hydra overrides]``: one Hydra app per command, configs in configs/.

Examples::

    toolgym tasks env=tau3_airline env.split=test
    toolgym replay env=tau3_airline env.split=train policy=do_nothing

A user's mistake (unknown split, task, option) prints one line and exits with status 2.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def _output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def show_tasks(cfg: DictConfig) -> None:
    from envs.factory import make_env
    from envs.users import ScriptedUser

    env = make_env(OmegaConf.to_container(cfg.env), user=ScriptedUser())
    counts: dict[str, int] = defaultdict(int)
    print(f"{'task':>6}  category")
    for spec in env.tasks():
        counts[spec.category] += 1
        print(f"{spec.task_id:>6}  {spec.category}")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"{cfg.env.name} {cfg.env.split}: {len(env.tasks())} tasks ({summary})")


def run_replay(cfg: DictConfig) -> None:
    from envs.factory import make_env, make_user
    from envs.replay import replay

    env = make_env(OmegaConf.to_container(cfg.env), user=make_user(cfg.user))
    task_ids = [t.task_id for t in env.tasks()]
    out = _output_dir() / "replay.jsonl"
    results = []
    with out.open("w") as f:
        for r in tqdm(replay(env, task_ids, cfg.policy), total=len(task_ids), desc=cfg.policy):
            results.append(r)
            f.write(json.dumps(asdict(r)) + "\n")
    print(f"{'task':>6}  {'category':<17} {'reward':>6}  {'calls':>5}  end")
    for r in results:
        row = f"{r.task_id:>6}  {r.category:<17} {r.reward:>6.2f}  {r.tool_calls:>5}"
        print(f"{row}  {r.termination_reason}")
    by_cat: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_cat[r.category].append(r.reward)
    for cat, rewards in sorted(by_cat.items()):
        print(f"{cat:<17} {sum(rewards):.0f}/{len(rewards)}")
    total = sum(r.reward for r in results)
    print(
        f"{cfg.policy} on {cfg.env.name} {cfg.env.split}: {total:.0f}/{len(results)} "
        f"(pass@1 {total / len(results):.3f}); records in {out}"
    )


COMMANDS: dict[str, Callable[[DictConfig], None]] = {
    "tasks": show_tasks,
    "replay": run_replay,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: toolgym {{{','.join(COMMANDS)}}} [key=value ...]", file=sys.stderr)
        sys.exit(2)
    name = sys.argv.pop(1)
    command = COMMANDS[name]

    def task(cfg: DictConfig) -> None:
        from envs.core import ConfigError
        from envs.tau2_engine import DataIntegrityError

        try:
            command(cfg)
        except (ConfigError, DataIntegrityError) as e:
            print(f"toolgym {name}: {e}", file=sys.stderr)
            sys.exit(2)

    hydra.main(config_path=str(CONFIG_DIR), config_name=name, version_base="1.3")(task)()


if __name__ == "__main__":
    main()
