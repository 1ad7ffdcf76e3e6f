"""Whole trainer steps with a hosted analyst: SGCD vs GRPO, and SGCD's analyst requests
sent as each group's rollouts end vs after all of them.

    python bench/hosted_step.py [--quick] [--latency 5]

One set of run parts (SmolLM2, airline_mini, ``make run``'s train sizes; quick: smaller)
and one trainer per arm, every arm stepping from the same weights with the same seeds, so
all roll out the same episodes. Each group's rewards are relabelled 1, 0, 1, ... by
sibling as its episodes end (a policy succeeding half the time: the untrained model never
does), so every group is mixed and SGCD asks for a reference for each. The hosted analyst
is a loopback OpenAI-compatible server (no network here) answering after ``--latency``
seconds with a fixed reference. Arms, alternating after one untimed warm-up step each:

* GRPO step;
* SGCD step -- the trainer as it runs: each group's request sent as its siblings end;
* SGCD step, sent late -- the same trainer with its early credit switched off, i.e. the
  request sent after the step's last rollout (the schedule before early credit).

Ratios: ``sgcd_hosted_step_vs_grpo`` (SGCD's step time over GRPO's, rollouts included)
and ``sgcd_hosted_late_step_vs_grpo`` (the same with the requests sent late).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from envs.config import build_config
from learners.cli import CONFIG_DIR, learner_options, run_parts
from learners.training.train import TrainConfig, Trainer

REFERENCE = (
    "(1) State checks: successful siblings look up the user and the reservation before "
    "acting. (2) Reusable branch: get the reservation details, check the policy, then act. "
    "(3) Failed branches apologise or act without the lookup. (4) Deviation point: the "
    "first assistant message. (5) Keep the user id and reservation id masked."
)


class StandInServer:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that answers every request after
    ``latency`` seconds with :data:`REFERENCE`."""

    def __init__(self, latency: float) -> None:
        reply = {
            "id": "stand-in",
            "object": "chat.completion",
            "created": 0,
            "model": "stand-in",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": REFERENCE},
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        body = json.dumps(reply).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(latency)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self) -> None:
        self.server.shutdown()


class HalfSucceeding:
    """An env pool whose finished episodes score 1, 0, 1, ... by sibling (the job index
    modulo the group size), so that every group is mixed."""

    def __init__(self, pool, n: int) -> None:
        self.pool, self.n, self.size = pool, n, pool.size

    def reset(self, jobs):
        return self.pool.reset(jobs)

    def step(self, actions):
        out = self.pool.step(actions)
        for slot, (obs, reward, terminated, truncated, info) in out.items():
            if terminated or truncated:
                reward = float(slot % self.n % 2 == 0)
                out[slot] = (obs, reward, terminated, truncated, info)
        return out

    def close(self) -> None:
        self.pool.close()


def _config(quick: bool, url: str) -> dict:
    overrides = [
        "env=airline_mini",
        "learner=sgcd",
        "credit_llm=openai",
        "credit_llm.model=stand-in",
        f"credit_llm.base_url={url}",
        "train.dynamic_sampling=false",
    ]
    if quick:
        overrides += ["rollout.n=4", "rollout.sampling.max_new_tokens=32", "env.max_steps=2"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=overrides), resolve=True)


def measure(quick: bool, latency: float = 5.0) -> tuple[list[str], dict[str, float]]:
    server = StandInServer(latency)
    try:
        return _measure(quick, latency, server.url)
    finally:
        server.close()


def _measure(quick: bool, latency: float, url: str) -> tuple[list[str], dict[str, float]]:
    c = _config(quick, url)
    train_cfg = build_config(TrainConfig, c["train"], "train")
    parts = run_parts(c, train_cfg.draw_size)
    parts.pool = HalfSucceeding(parts.pool, parts.rollout.n)
    options = learner_options(c)
    run_dir = Path(tempfile.mkdtemp(prefix="hosted_step_"))
    trainers = {
        "GRPO step": Trainer(run_dir / "grpo", parts, "grpo", {}, train_cfg),
        "SGCD step": Trainer(run_dir / "sgcd", parts, "sgcd", options, train_cfg),
        "SGCD, sent late": Trainer(run_dir / "late", parts, "sgcd", options, train_cfg),
    }
    trainers["SGCD, sent late"].early_analyst = None  # switches its early credit off
    for trainer in trainers.values():
        trainer.run_dir.mkdir()
    start = {k: v.clone() for k, v in parts.model.state_dict().items()}

    def step(name: str) -> dict[str, float]:
        parts.model.load_state_dict(start)
        parts.policy.generator.sync_weights(parts.model)
        return trainers[name].step(1)

    for name in trainers:  # warm-up, untimed
        step(name)
    repeats = 1 if quick else 2
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trainers}
    for _ in range(repeats):
        for name in trainers:
            runs[name].append(step(name))

    def med(name: str, key: str) -> float:
        return statistics.median(m[key] for m in runs[name])

    lines = [
        f"trainer step (airline_mini, {parts.rollout.n} siblings x {train_cfg.groups_per_step} "
        f"groups, every group mixed; hosted stand-in answering in {latency:g} s; "
        f"median of {repeats}):"
    ]
    for name in trainers:
        lines.append(
            f"  {name:<16} {med(name, 'time/step_s'):7.2f} s  (rollouts "
            f"{med(name, 'time/rollout_s'):.2f} s, update {med(name, 'time/update_s'):.2f} s, "
            f"waited on credit {med(name, 'time/credit_wait_s'):.2f} s)"
        )
    grpo = med("GRPO step", "time/step_s")
    ratios = {
        "sgcd_hosted_step_vs_grpo": med("SGCD step", "time/step_s") / grpo,
        "sgcd_hosted_late_step_vs_grpo": med("SGCD, sent late", "time/step_s") / grpo,
    }
    return lines, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--latency", type=float, default=5.0, help="seconds the hosted stand-in takes"
    )
    args = parser.parse_args()
    lines, ratios = measure(args.quick, args.latency)
    print("\n".join(lines))
    print(" ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
