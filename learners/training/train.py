"""The training loop, written once for every learner:

    rollout (dynamic sampling) -> credit.start -> learner.loss per episode -> AdamW step
    -> weight sync to the sampler -> metrics, checkpoint, periodic held-out evaluation.

A teacher-scored credit takes its student side from the update's own forward
(:class:`credit.types.StepCredit`); a credit that waits on a hosted analyst runs beside
that forward (:mod:`learners.training.pending_credit`), and its requests go out as each
group's rollouts end (the credit method's ``early``), beside the other groups' rollouts.

A run directory holds ``run.json``, ``metrics.jsonl`` (one line per step), ``eval.jsonl``,
``eval_episodes/step_<k>.jsonl``, ``weights/step_<k>.npy`` (credit weights, when not all
ones) and ``checkpoint/`` (model, optimizer, RNG, step). Rerunning with the same run
directory resumes after the last finished step: a killed run loses at most the step it was
in.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.chat import EarlyStartChat, waits_on_network
from agents.env_pool import EnvPool, EnvSpec
from agents.episode import EpisodeGroup
from agents.hf_generation import HFGenerator
from agents.precision import resolve_dtype
from agents.rollout import Policy, RolloutConfig, rollout_groups
from credit import get_credit
from credit.task_prompts import ChatTaskPrompts
from credit.teacher import Teacher
from credit.types import StepCredit, TokenAdvantages
from envs.core import ToolUseEnv
from learners.forward import backward_shared_prefix
from learners.registry import Learner, LearnerContext, LossInput, get_learner
from learners.training.checkpoint import load_trainer_state, recover_checkpoint, save_checkpoint
from learners.training.distributed import Ranks
from learners.training.evaluate import (
    evaluate_policy,
    reuse_start_evaluation,
    shared_scripted_bounds,
    write_eval,
)
from learners.training.heap import give_back_freed_memory, resident_gb
from learners.training.metrics import episode_metrics
from learners.training.pending_credit import PendingCredit

AGGREGATIONS = ("token-mean", "seq-mean")
TEACHER_TITLE = "Training-only reference for this task:"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2
    """Optimizer steps."""
    groups_per_step: int = 2
    """Mixed groups wanted per step (paper: 8 tasks x 8 siblings)."""
    dynamic_sampling: bool = True
    """Keep drawing task batches until ``groups_per_step`` mixed groups are found (DAPO),
    filtering on the verifier outcome only."""
    max_draws: int = 3
    """Rollout rounds per step before training on what was found."""
    groups_per_draw: int | None = None
    """Task groups rolled out together in one round (None: ``groups_per_step``). Wider
    rounds find the mixed groups in fewer rounds, and on a CPU a round of twice the groups
    costs far less than two: a decode step reads all weights whatever the batch."""
    lr: float = 1e-5
    """AdamW learning rate (paper: 1e-6 for a 4B model)."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    loss_aggregation: str = "token-mean"
    """``token-mean`` over the batch's response tokens, or ``seq-mean`` (mean per episode)."""
    autocast: str = "auto"
    """Forward dtype over fp32 master weights: ``auto`` (the faster of bf16/fp32 here,
    :mod:`agents.precision`), ``bfloat16``, ``float16`` or ``float32`` (no autocast)."""
    max_tokens_per_forward: int = 16_384
    """Memory bound of the learner's forwards: a sibling group's continuations (after its
    shared prompt, encoded once) go in micro-batches of at most this many padded tokens,
    their gradients accumulated (the same update). 16,384 = one longest response of the
    paper's Tables 3-4 (toolgym choice)."""
    eval_every: int = 0
    """Held-out evaluation every k steps (0: only after the last step)."""
    eval_at_start: bool = False
    """Also evaluate the initial model, as step 0, so that curves start where training did."""
    start_eval: str | None = None
    """An ``evaluate`` output directory of the initial model on the same tasks, copied as
    the step-0 evaluation instead of computing it again (greedy evaluation of one model
    gives the same episodes for every learner and seed)."""
    eval_tasks: int | None = None
    """Evaluate on the first k tasks of the eval split (None: all)."""
    checkpoint_every: int = 1
    """Checkpoint every k steps (and after the last)."""
    monitor_patience: int = 3
    """Consecutive steps of inert credit (all-zero divergence or weights) before failing."""
    rank_timeout_s: float = 3600.0
    """With several learner ranks (torchrun, :mod:`learners.training.distributed`): how long a rank
    waits for rank 0's rollouts, credit and evaluations before the run fails."""
    seed: int = 0
    """Seeds task draws, envs and sampling."""

    def __post_init__(self) -> None:
        if self.loss_aggregation not in AGGREGATIONS:
            raise ValueError(f"loss_aggregation must be one of {AGGREGATIONS}")
        if self.groups_per_draw is not None and self.groups_per_draw < 1:
            raise ValueError("groups_per_draw must be >= 1 (or null: groups_per_step)")

    @property
    def draw_size(self) -> int:
        """Task groups per rollout round."""
        return self.groups_per_draw or self.groups_per_step


@dataclass
class RunParts:
    """What a run is made of, built by the caller from config."""

    policy: Policy  # the sampler (its own model copy, synced after each step)
    sampler_model: torch.nn.Module
    model: torch.nn.Module  # the trainable fp32 policy
    pool: EnvPool
    train_env: ToolUseEnv  # task list, labels
    eval_env: ToolUseEnv
    eval_spec: EnvSpec  # what eval_env was built from
    eval_pool: EnvPool
    rollout: RolloutConfig
    analyst: Any = None  # SGCD's external LLM (a ChatBackend)


def signal_groups(groups: list[EpisodeGroup], dynamic_sampling: bool) -> list[EpisodeGroup]:
    """The groups a step can learn from: none with an episode the env failed (a crashed
    server says nothing about the policy) and, with dynamic sampling, only mixed ones."""
    return [g for g in groups if not g.env_failed and (g.is_mixed or not dynamic_sampling)]


def check_response_mask(groups: list[EpisodeGroup]) -> None:
    """Runtime monitor: the loss mask covers only tokens the policy generated."""
    for g in groups:
        for e in g.episodes:
            generated = set()
            for t in e.assistant_turns():
                generated.update(range(t.start, t.end))
            stray = [i for i, m in enumerate(e.response_mask) if m and i not in generated]
            if stray:
                raise RuntimeError(
                    f"monitor: task {e.task_id}: response_mask covers {len(stray)} tokens "
                    "outside assistant turns (prompt or observation tokens in the loss)"
                )


def check_credit(advantages: TokenAdvantages, groups: list[EpisodeGroup]) -> bool:
    """Runtime monitors on credit; returns whether the credit was inert this step."""
    if any(w.requires_grad for w in advantages.weights):
        raise RuntimeError(
            "monitor: a gradient flows through the credit weights (must be detached)"
        )
    d = advantages.diagnostics
    mixed = any(g.is_mixed for g in groups)
    return (
        mixed
        and ("credit/divergence_max" in d)
        and (d["credit/divergence_max"] == 0 or d.get("credit/weighted_token_share", 1.0) == 0)
    )


class Trainer:
    def __init__(
        self,
        run_dir: Path,
        parts: RunParts,
        learner_name: str,
        learner_options: dict,
        config: TrainConfig,
        ranks: Ranks | None = None,
    ):
        self.run_dir, self.parts, self.config = Path(run_dir), parts, config
        self.ranks = ranks or Ranks()
        entry = get_learner(learner_name)
        self.learner_name = learner_name
        self.precision = resolve_dtype(config.autocast, next(parts.model.parameters()).device)
        reference = None
        if entry.learner_class.needs_reference:
            reference = frozen_copy(parts.model)
        prompts = ChatTaskPrompts(parts.policy.chat, parts.train_env.task_labels, TEACHER_TITLE)
        generator = parts.policy.generator
        analyst = parts.analyst
        if self.ranks.world == 1 and waits_on_network(analyst):
            # a step sends at most one early request per group it learns from
            analyst = EarlyStartChat(analyst, max_concurrent=config.groups_per_step)
        self.context = LearnerContext(
            temperature=parts.rollout.sampling.temperature or 1.0,
            autocast=self.precision.autocast,
            max_tokens_per_forward=config.max_tokens_per_forward,
            reference=reference,
            teacher=Teacher(
                model=parts.sampler_model,
                prompts=prompts,
                analyst=analyst,
                prompt_cache=generator if isinstance(generator, HFGenerator) else None,
            ),
        )
        learner_config = entry.make_config(learner_options)
        self.learner: Learner = entry.learner_class(learner_config, self.context)
        self.credit = get_credit(self.learner.credit_method)
        self.credit_config = self.credit.make_config(self.learner.credit_config())
        self.early_analyst = analyst if isinstance(analyst, EarlyStartChat) else None
        self.optimizer = torch.optim.AdamW(
            parts.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.task_ids = [t.task_id for t in parts.train_env.tasks()]
        self.start_step = 1
        self._on_eval_tasks: Callable[[int, int], None] | None = None
        self.inert_steps = 0

    # -- state -----------------------------------------------------------------------
    def resume(self) -> None:
        """Continue after the last checkpointed step, if this run directory has one."""
        path = recover_checkpoint(self.run_dir / "checkpoint")
        if path is None:
            return
        state = load_trainer_state(path)
        loaded = type(self.parts.model).from_pretrained(path, dtype=torch.float32)
        self.parts.model.load_state_dict(loaded.state_dict())
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt"))
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        self.start_step = state["step"] + 1
        if not self.ranks.leader:  # the run's sampler and files are rank 0's
            return
        self.parts.policy.generator.sync_weights(self.parts.model)
        for name in ("metrics.jsonl", "eval.jsonl"):  # drop lines of an unfinished step
            _truncate_jsonl(self.run_dir / name, state["step"])

    def _checkpoint(self, step: int) -> None:
        save_checkpoint(
            self.run_dir / "checkpoint",
            self.parts.model,
            self.parts.policy.chat.tokenizer,
            self.optimizer,
            {
                "step": step,
                "learner": self.learner_name,
                "torch_rng": torch.get_rng_state().tolist(),
            },
        )

    # -- the loop --------------------------------------------------------------------
    def run(
        self,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        on_eval: Callable[[int, dict[str, float]], None] | None = None,
        on_eval_tasks: Callable[[int, int], None] | None = None,
    ) -> None:
        """``on_eval_tasks(step, k)``: k more held-out tasks of step's evaluation are done."""
        if not self.ranks.leader:
            for _ in range(self.start_step, self.config.steps + 1):
                self._follow()
            return
        self._on_eval_tasks = on_eval_tasks
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.bounds = shared_scripted_bounds(
            self.parts.eval_spec, self.parts.eval_env, self.eval_task_ids()
        )
        if self.config.eval_at_start and not self._evaluated(0):
            evaluation = (
                reuse_start_evaluation(
                    Path(self.config.start_eval), self.run_dir, self.eval_task_ids()
                )
                if self.config.start_eval
                else self.evaluate(0)
            )
            give_back_freed_memory()
            if on_eval:
                on_eval(0, evaluation)
        for step in range(self.start_step, self.config.steps + 1):
            metrics = self.step(step)
            give_back_freed_memory()
            metrics["memory/resident_gb"] = resident_gb()
            _append(self.run_dir / "metrics.jsonl", metrics)
            last = step == self.config.steps
            if last or (self.config.eval_every and step % self.config.eval_every == 0):
                evaluation = self.evaluate(step)
                give_back_freed_memory()
                if on_eval:
                    on_eval(step, evaluation)
            if last or step % self.config.checkpoint_every == 0:
                self._checkpoint(step)
            if on_step:
                on_step(step, metrics)

    def step(self, step: int) -> dict[str, float]:
        started = time.perf_counter()
        groups, drawn, draws = self._sample(step)
        check_response_mask(groups)
        metrics: dict[str, float] = {"step": step, **episode_metrics(drawn, "rollout")}
        metrics["time/threads"] = torch.get_num_threads()  # a parallel comparison's share
        metrics.update(
            {
                "rollout/draws": draws,
                "rollout/groups_drawn": len(drawn),
                "rollout/kept_groups": len(groups),
            }
        )
        metrics["time/rollout_s"] = time.perf_counter() - started
        # a step without a mixed group has no learning signal: no gradient step is taken
        metrics["train/updated"] = float(bool(groups))
        if not groups:
            self.ranks.broadcast(None)  # the other ranks skip this step's update too
            metrics["time/step_s"] = time.perf_counter() - started
            return metrics
        update_start = time.perf_counter()
        credit = PendingCredit(
            lambda: self.credit.start(groups, self.context.teacher, self.credit_config),
            in_background=self.ranks.world == 1 and waits_on_network(self.parts.analyst),
        )
        metrics.update(self._update(groups, credit))
        advantages = credit.complete()
        metrics["time/credit_s"] = credit.seconds
        metrics["time/credit_wait_s"] = credit.waited_s  # the part the update did not hide
        metrics["time/update_s"] = time.perf_counter() - update_start - credit.waited_s
        self.inert_steps = self.inert_steps + 1 if check_credit(advantages, groups) else 0
        if self.inert_steps >= self.config.monitor_patience:
            raise RuntimeError(
                f"monitor: credit was inert for {self.inert_steps} steps "
                "(divergence or weights all zero)"
            )
        metrics.update(advantages.diagnostics)
        if self.early_analyst is not None:  # a request sent early that credit did not take
            metrics["credit/analyst_early_unused"] = self.early_analyst.drop_unused()
        self._save_weights(step, advantages, groups)
        metrics["time/step_s"] = time.perf_counter() - started
        return metrics

    def _sample(self, step: int) -> tuple[list[EpisodeGroup], list[EpisodeGroup], int]:
        """Dynamic sampling: mixed groups kept; all-pass, all-fail and env-failed ones only
        counted."""
        rng = random.Random(self.config.seed * 1_000_003 + step)
        per_draw = min(self.config.draw_size, len(self.task_ids))
        kept, drawn = [], []
        draws = 0
        while draws < self.config.max_draws:
            tasks = rng.sample(self.task_ids, per_draw)
            seed = self.config.seed * 1_000_003 + step * 1_009 + draws * 101
            new = rollout_groups(
                self.parts.pool,
                self.parts.policy,
                tasks,
                seed,
                self.parts.rollout,
                on_group=self._early_credit(len(kept)),
            )
            draws += 1
            drawn += new
            usable = signal_groups(new, self.config.dynamic_sampling)
            if not self.config.dynamic_sampling:
                return usable[: self.config.groups_per_step], drawn, draws
            kept += usable
            if len(kept) >= self.config.groups_per_step:
                break
        return kept[: self.config.groups_per_step], drawn, draws

    def _early_credit(self, kept: int) -> Callable[[int, EpisodeGroup], None] | None:
        """The credit's early work (``CreditMethod.early``) on each rolled-out group the
        step is sure to learn from: a usable group is kept when fewer than
        ``groups_per_step`` usable ones can come before it, i.e. the ``kept`` of earlier
        draws and the ``j`` before it in this draw."""
        if self.early_analyst is None or self.credit.early is None:
            return None

        def start(j: int, group: EpisodeGroup) -> None:
            if kept + j < self.config.groups_per_step and signal_groups([group], True):
                self.credit.early(group, self.context.teacher, self.credit_config)

        return start

    def _update(self, groups: list[EpisodeGroup], credit: PendingCredit) -> dict[str, float]:
        if self.ranks.world == 1:  # the loss reads the credit lazily: the forward goes first
            out = self._learn(groups, credit)
        else:  # the other ranks need the credit before their forward
            out = self._learn(*self.ranks.broadcast((groups, credit.complete())))
        self.parts.policy.generator.sync_weights(self.parts.model)
        return out

    def _follow(self) -> None:
        """A rank other than 0: one step's update on the groups and credit rank 0 sends."""
        credit = self.ranks.broadcast()
        if credit is not None:
            self._learn(*credit)

    def _learn(self, groups: list[EpisodeGroup], credit: StepCredit) -> dict[str, float]:
        """One optimizer step on the step's groups, this rank's share backpropagated and
        the gradients summed over ranks; returns the loss metrics of all of them. A rank
        that owns every group passes the credit on unread (it may still be pending)."""
        model = self.parts.model
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        items = [(i, g, j) for i, g in enumerate(groups) for j in range(len(g.episodes))]
        total_tokens = sum(sum(g.episodes[j].response_mask) for _, g, j in items)
        scales = [
            1.0 / max(total_tokens, 1)
            if self.config.loss_aggregation == "token-mean"
            else 1.0 / (len(items) * max(sum(g.episodes[j].response_mask), 1))
            for _, g, j in items
        ]
        mine = [k for k, (i, _, _) in enumerate(items) if self.ranks.owns(i)]
        if len(mine) < len(items):
            credit = credit.complete().subset(mine)
        sums: dict[str, float] = {}
        if mine:
            sums = backward_groups(
                self.learner,
                model,
                [g for i, g in enumerate(groups) if self.ranks.owns(i)],
                credit,
                [scales[k] for k in mine],
            )
        self.ranks.sum_gradients(model)
        sums = self.ranks.sum_values(sums)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.learner.after_step(model)
        model.eval()
        out = {k: v for k, v in sums.items() if k.endswith(("/pg", "/kl", "/sd"))}
        out.update({k: v / len(items) for k, v in sums.items() if k not in out})
        out["train/grad_norm"] = float(grad_norm)
        out["train/response_tokens"] = float(total_tokens)
        return out

    def eval_task_ids(self) -> list[str]:
        return [t.task_id for t in self.parts.eval_env.tasks()][: self.config.eval_tasks]

    def evaluate(self, step: int) -> dict[str, float]:
        greedy = RolloutConfig(
            n=1,
            sampling=type(self.parts.rollout.sampling)(
                temperature=0.0,
                top_p=1.0,
                max_new_tokens=self.parts.rollout.sampling.max_new_tokens,
            ),
            max_context_tokens=self.parts.rollout.max_context_tokens,
        )
        progress = self._on_eval_tasks
        groups = evaluate_policy(
            self.parts.eval_pool,
            self.parts.policy,
            self.eval_task_ids(),
            greedy,
            self.config.seed,
            (lambda new: progress(step, len(new))) if progress else None,
        )
        return write_eval(self.run_dir, step, groups, self.bounds)

    def _evaluated(self, step: int) -> bool:
        path = self.run_dir / "eval.jsonl"
        return path.is_file() and any(
            json.loads(line)["step"] == step for line in path.read_text().splitlines() if line
        )

    def _save_weights(
        self, step: int, advantages: TokenAdvantages, groups: list[EpisodeGroup]
    ) -> None:
        masks = [
            torch.tensor(e.response_mask, dtype=torch.bool) for g in groups for e in g.episodes
        ]
        weights = torch.cat([w[m] for w, m in zip(advantages.weights, masks, strict=True)])
        if len(weights) and not torch.all(weights == 1):
            (self.run_dir / "weights").mkdir(exist_ok=True)
            np.save(self.run_dir / "weights" / f"step_{step}.npy", weights.numpy())


def backward_groups(
    learner: Learner,
    model: torch.nn.Module,
    groups: list[EpisodeGroup],
    credit: StepCredit,
    scales: list[float],
) -> dict[str, float]:
    """Backpropagate the learner's loss over a step's episodes (``credit`` and ``scales``
    in group order) in one :func:`learners.forward.backward_shared_prefix`: the prefix
    every episode shares (a group's prompt; across groups, the system prompt and tools) is
    encoded once. The credit is read only by the losses, after the forward of the prefix
    and the first micro-batch (:class:`~learners.training.pending_credit.PendingCredit`);
    a teacher-scored credit takes each episode's student side from this forward's logits.
    Returns the summed metrics."""
    episodes = [(g, j) for g in groups for j in range(len(g.episodes))]
    sums: dict[str, float] = defaultdict(float)

    def loss_of(i: int, logits: torch.Tensor) -> torch.Tensor:
        group, j = episodes[i]
        advantages = credit.advantage(i, logits.detach())
        teacher_prompt = credit.teacher_prompts[i] if credit.teacher_prompts else None
        x = LossInput(model, group, j, advantages, scales[i], logits, teacher_prompt)
        loss, metrics = learner.loss(x)
        for k, v in metrics.items():
            sums[k] += v
        return loss

    items = [
        (g.prompt_ids, g.episodes[j].ids, g.episodes[j].response_positions()) for g, j in episodes
    ]
    context = learner.context
    backward_shared_prefix(model, items, loss_of, context.autocast, context.max_tokens_per_forward)
    return sums


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).eval().requires_grad_(False)


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_jsonl(path: Path, last_step: int) -> None:
    if not path.is_file():
        return
    lines = [
        ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= last_step
    ]
    path.write_text("".join(ln + "\n" for ln in lines))
