"""One SGCD step of the paper's τ³-airline recipe on one GPU, with vLLM rollouts.

    make gpu-smoke [GPU_MODEL=<hub id of a chat model, 0.5B-4B>]

For the first user with a GPU: checks in minutes that the GPU path (vLLM sampler, learner
and teacher scoring on the GPU, weight sync) runs end to end, and prints where the step's
time went. The recipe is ``experiment=paper_tau3_airline_sgcd`` with the model swapped
for a small one and the sizes shrunk; the user is scripted and the analyst is the same
model running locally unless ANTHROPIC_API_KEY is set. Not part of ``make test``. It was
written on machines without a GPU and has not run yet: the first run is its test.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu-smoke"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu-smoke: no CUDA GPU is visible")
    from huggingface_hub import snapshot_download

    from learners.cli import train_one

    path = snapshot_download(args.model)  # vLLM loads a directory (model.init_from)
    hosted = bool(os.environ.get("ANTHROPIC_API_KEY"))
    overrides = [
        "experiment=paper_tau3_airline_sgcd",
        f"model.name={path}",
        f"model.init_from={path}",
        "user=scripted" if not hosted else "user=llm_anthropic",
        *([] if hosted else ["credit_llm=local", f"credit_llm.model={path}"]),
        "train.steps=1",
        "train.groups_per_step=2",
        "train.max_draws=2",
        "train.eval_tasks=4",
        "eval_batch=4",
        "rollout.n=4",
        "rollout.sampling.max_new_tokens=512",
        "rollout.max_context_tokens=8192",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        c = OmegaConf.to_container(compose("train", overrides=overrides), resolve=True)
    run_dir = args.out / time.strftime("%Y%m%d-%H%M%S")
    started = time.perf_counter()
    train_one(c, run_dir)
    (step,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    print(f"gpu-smoke: {args.model} on {torch.cuda.get_device_name()}, run dir {run_dir}")
    for key in sorted(k for k in step if k.startswith(("time/", "credit/")) and k.endswith("_s")):
        print(f"  {key:<28} {step[key]:8.1f} s")
    print(f"  whole command                {time.perf_counter() - started:8.1f} s")
    print(f"  peak GPU memory              {torch.cuda.max_memory_allocated() / 2**30:8.1f} GiB")


if __name__ == "__main__":
    main()
