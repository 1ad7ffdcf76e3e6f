"""``toolgym <command> [hydra overrides]``: one Hydra app per command, configs in configs/.

Examples::

    toolgym tasks env=tau3_airline env.split=test
    toolgym replay env=tau3_airline env.split=train policy=do_nothing

A user's mistake (unknown split, task, option) prints one line and exits with status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# the commands' messages: plain on the console and timestamped in the run's cli.log
# (configs/hydra/job_logging/toolgym.yaml)
log = logging.getLogger("toolgym")


def _output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _sampler_precision(model_cfg: dict) -> dict:
    """Resolve (and print) the sampling model's dtype; its record for ``run.json``."""
    from agents.precision import resolve_dtype

    precision = resolve_dtype(model_cfg["dtype"])
    log.info(f"sampler weights: {precision.describe()}")
    return precision.record()


def show_tasks(cfg: DictConfig) -> None:
    from envs.factory import make_env
    from envs.users import ScriptedUser

    env = make_env(OmegaConf.to_container(cfg.env, resolve=True), user=ScriptedUser())
    counts: dict[str, int] = defaultdict(int)
    log.info(f"{'task':>6}  category")
    for spec in env.tasks():
        counts[spec.category] += 1
        log.info(f"{spec.task_id:>6}  {spec.category}")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    log.info(f"{cfg.env.name} {cfg.env.split}: {len(env.tasks())} tasks ({summary})")


def run_replay(cfg: DictConfig) -> None:
    from envs.factory import make_env, make_user
    from envs.replay import replay

    env = make_env(OmegaConf.to_container(cfg.env, resolve=True), user=make_user(cfg.user))
    task_ids = [t.task_id for t in env.tasks()]
    out = _output_dir() / "replay.jsonl"
    results = []
    with out.open("w") as f:
        for r in tqdm(replay(env, task_ids, cfg.policy), total=len(task_ids), desc=cfg.policy):
            results.append(r)
            f.write(json.dumps(asdict(r)) + "\n")
    log.info(f"{'task':>6}  {'category':<17} {'reward':>6}  {'calls':>5}  end")
    for r in results:
        row = f"{r.task_id:>6}  {r.category:<17} {r.reward:>6.2f}  {r.tool_calls:>5}"
        log.info(f"{row}  {r.termination_reason}")
    by_cat: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_cat[r.category].append(r.reward)
    for cat, rewards in sorted(by_cat.items()):
        log.info(f"{cat:<17} {sum(rewards):.0f}/{len(rewards)}")
    total = sum(r.reward for r in results)
    log.info(
        f"{cfg.policy} on {cfg.env.name} {cfg.env.split}: {total:.0f}/{len(results)} "
        f"(pass@1 {total / len(results):.3f}); records in {out}"
    )


def run_rollout(cfg: DictConfig) -> None:
    from agents.build import build_policy, build_pool, rollout_config
    from agents.env_pool import EnvSpec
    from agents.episode import save_groups
    from agents.rollout import rollout_groups

    container = OmegaConf.to_container(cfg, resolve=True)
    spec = EnvSpec(container["env"], container["user"])
    config = rollout_config(container["rollout"])
    task_ids = [t.task_id for t in spec.build().tasks()][: cfg.num_tasks]
    policy, _ = build_policy(container["model"], container["rollout"])
    pool = build_pool(spec, config.n * len(task_ids), container["rollout"])
    total = config.n * len(task_ids)
    with tqdm(total=total, desc="episodes") as bar:
        groups = rollout_groups(
            pool, policy, task_ids, cfg.seed, config, on_step=lambda done: bar.update(done - bar.n)
        )
    pool.close()
    out = _output_dir() / "groups.jsonl"
    save_groups(groups, out)
    log.info(f"{'task':>6}  {'category':<17} {'wins':>5}  tool calls per sibling")
    for g in groups:
        wins = sum(e.success for e in g.episodes)
        calls = " ".join(str(len(e.tool_calls)) for e in g.episodes)
        log.info(f"{g.task_id:>6}  {g.category:<17} {wins:>2}/{len(g.episodes):<2}  {calls}")
    turns = [t for g in groups for e in g.episodes for t in e.assistant_turns()]
    with_calls = sum(bool(t.tool_calls) for t in turns)
    log.info(
        f"{len(turns)} assistant messages, {with_calls} with a parsed tool call; "
        f"mixed groups {sum(g.is_mixed for g in groups)}/{len(groups)}; records in {out}"
    )


def _print_eval(groups, m: dict[str, float], title: str) -> None:
    from learners.reports.stats import pass_k_table

    log.info(f"{'task':>6}  {'category':<17} {'passed':>6}  tool calls (first episode)")
    for g in groups:
        wins = f"{sum(e.success for e in g.episodes)}/{len(g.episodes)}"
        calls = ",".join(g.episodes[0].tool_calls) or "-"
        log.info(f"{g.task_id:>6}  {g.category:<17} {wins:>6}  {calls}")
    cats = sorted({k.split("/")[1] for k in m if k.endswith("/episodes")})
    for c in cats:
        n = int(m[f"eval/{c}/episodes"])
        log.info(f"{c:<17} {m[f'eval/{c}/success'] * n:.0f}/{n}")
    if "eval/tgc" in m:
        log.info(f"AppWorld goal completion: TGC {m['eval/tgc']:.1f}, SGC {m['eval/sgc']:.1f}")
    n = min(len(g.episodes) for g in groups)
    if n > 1:  # several episodes per task: pass@k and pass^k (SGCD paper, Appendix B)
        table = pass_k_table(
            {g.task_id: [e.success for e in g.episodes] for g in groups}, range(1, n + 1)
        )
        for row in table:
            log.info(f"k={row.k}: pass@k {row.pass_at_k:.3f}  pass^k {row.pass_hat_k:.3f}")
    log.info(
        f"{title}: pass@1 {m['eval/success']:.3f} "
        f"(do-nothing floor {m['eval/do_nothing_floor']:.3f}, "
        f"gold-replay ceiling {m['eval/gold_ceiling']:.3f}); "
        f"messages with a parsed tool call {m['eval/tool_call_rate']:.1%}, "
        f"malformed {m['eval/malformed_rate']:.1%}"
    )


def run_evaluate(cfg: DictConfig) -> None:
    from agents.build import build_policy, build_pool, rollout_config
    from agents.env_pool import EnvSpec
    from agents.episode import load_groups, save_groups
    from learners.training.evaluate import evaluate_policy, scripted_bounds, write_eval

    c = OmegaConf.to_container(cfg, resolve=True)
    spec = EnvSpec(c["env"], c["user"])
    env = spec.build()
    task_ids = [t.task_id for t in env.tasks()][: cfg.num_tasks]
    config = rollout_config(c["rollout"])
    policy, model = build_policy(c["model"], c["rollout"])
    precision = None if model is None else _sampler_precision(c["model"])
    out = Path(cfg.out_dir) if cfg.out_dir else _output_dir()
    out.mkdir(parents=True, exist_ok=True)
    # each batch's episodes are appended as it ends; an interrupted evaluation with the same
    # config continues where it stopped
    partial, fingerprint = out / "eval_groups.partial.jsonl", out / "eval_config.json"
    same = fingerprint.is_file() and json.loads(fingerprint.read_text()) == c
    done = load_groups(partial) if same and partial.is_file() else []
    if done:
        log.info(f"continuing: {len(done)} of {len(task_ids)} tasks already evaluated in {out}")
    fingerprint.write_text(json.dumps(c, indent=1))
    pool = build_pool(spec, cfg.batch_size, c["rollout"])
    with (
        partial.open("a" if done else "w") as sink,
        tqdm(total=len(task_ids), initial=len(done), desc="evaluate") as bar,
    ):

        def on_batch(new):
            sink.writelines(json.dumps(g.to_json()) + "\n" for g in new)
            sink.flush()
            bar.update(len(new))

        groups = evaluate_policy(pool, policy, task_ids, config, cfg.seed, on_batch, done)
    pool.close()
    save_groups(groups, out / "eval_groups.jsonl")
    partial.unlink()
    title = f"{cfg.env.name} {cfg.env.split} ({len(task_ids)} tasks)"
    with tqdm(total=2 * len(task_ids), desc="do-nothing floor, gold ceiling") as bar:
        bounds = scripted_bounds(env, task_ids, bar.update)
    # an evaluation-only run in the layout of a training run, so reports can include it
    (out / "run.json").write_text(
        json.dumps(
            {
                "env": cfg.env.name,
                "learner": cfg.label,
                "seed": cfg.seed,
                "model": cfg.model.init_from or cfg.model.name,
                "precision": {"sampler": precision},
                "config": c,
            },
            indent=1,
        )
    )
    (out / "metrics.jsonl").touch()
    (out / "eval.jsonl").unlink(missing_ok=True)
    _print_eval(groups, write_eval(out, 0, groups, bounds), title)
    log.info(f"records and metrics in {out}")


def run_sft(cfg: DictConfig) -> None:
    from agents.build import build_policy, build_pool
    from agents.chat import make_chat_backend
    from agents.env_pool import EnvSpec
    from agents.episode import save_groups
    from agents.precision import resolve_dtype
    from agents.trajectories import gold_replay_records, teacher_records
    from envs.config import build_config, check_not_held_out
    from learners.sft import SFTConfig, train_sft
    from learners.training.checkpoint import save_checkpoint

    c = OmegaConf.to_container(cfg, resolve=True)
    check_not_held_out(c["env"]["split"], c["env"]["test_splits"], "SFT data")
    spec = EnvSpec(c["env"], c["user"])
    env = spec.build()
    task_ids = [t.task_id for t in env.tasks()]
    policy, model = build_policy(c["model"], c["rollout"])
    pool = build_pool(spec, min(len(task_ids), 8), c["rollout"])
    if cfg.source == "gold":
        with tqdm(total=len(task_ids), desc="harvest gold replays") as bar:
            groups, report = gold_replay_records(
                pool, policy.chat, task_ids, env.gold_actions, bar.update
            )
    else:  # teacher (learners/preflight.py checked the source and its backend)
        backend = make_chat_backend(c["teacher"])
        groups, report = teacher_records(
            pool, policy.chat, backend, task_ids, cfg.attempts, cfg.seed, None
        )
    pool.close()
    out = Path(cfg.out_dir) if cfg.out_dir else _output_dir()
    out.mkdir(parents=True, exist_ok=True)
    save_groups(groups, out / "sft_records.jsonl")
    log.info(
        f"SFT records from {cfg.env.name} {cfg.env.split}: kept {report.kept}, "
        f"discarded {report.discarded} {report.discarded_tasks or ''}"
    )
    config = build_config(SFTConfig, learner_options(c), "learner sft")
    log.info(f"SFT autocast: {resolve_dtype(config.autocast).describe()}")
    with (
        (out / "sft_metrics.jsonl").open("w") as metrics_file,
        tqdm(total=config.steps, desc="sft") as bar,
    ):

        def on_step(step, metrics):
            metrics_file.write(json.dumps(metrics) + "\n")
            metrics_file.flush()
            bar.set_postfix(loss=f"{metrics['loss/sft']:.3f}")
            bar.update(1)

        history = train_sft(model, groups, config, on_step)
    path = save_checkpoint(
        out / "checkpoint",
        model,
        policy.chat.tokenizer,
        None,
        {"learner": "sft", "steps": config.steps, "records": report.kept},
    )
    log.info(
        f"loss {history[0]['loss/sft']:.3f} -> {history[-1]['loss/sft']:.3f}; "
        f"checkpoint: {path} (use model.init_from={path})"
    )


def run_train(cfg: DictConfig) -> None:
    from envs.config import ConfigError
    from learners.training.distributed import launched_ranks

    if launched_ranks() > 1 and not cfg.run_dir:
        raise ConfigError("learner ranks (torchrun) share one run directory: set run_dir=<dir>")
    run_dir = Path(cfg.run_dir) if cfg.run_dir else _output_dir()
    train_one(OmegaConf.to_container(cfg, resolve=True), run_dir)


def learner_options(c: dict) -> dict:
    """The options of a resolved config's learner: its section less the name."""
    return {k: v for k, v in c["learner"].items() if k != "name"}


def run_parts(c: dict, draw_size: int):
    """What a training run is made of (``learners.training.train.RunParts``), built from a
    resolved train config; ``draw_size``: the task groups rolled out together."""
    from agents.build import build_policy, build_pool, rollout_config
    from agents.chat import make_chat_backend
    from agents.env_pool import EnvSpec
    from agents.model import ModelConfig, load_model
    from envs.config import build_config
    from learners.registry import get_learner
    from learners.training.train import RunParts

    entry = get_learner(c["learner"]["name"])
    spec = EnvSpec(c["env"], c["user"])
    eval_spec = EnvSpec({**c["env"], "split": c["eval_split"]}, c["user"])
    rollout = rollout_config(c["rollout"])
    policy, sampler_model = build_policy(c["model"], c["rollout"])
    model, _ = load_model(build_config(ModelConfig, {**c["model"], "dtype": "float32"}, "model"))
    analyst = None
    if entry.learner_class.needs_analyst(entry.make_config(learner_options(c))):
        analyst = make_chat_backend(c["credit_llm"])
    return RunParts(
        policy=policy,
        sampler_model=sampler_model,
        model=model,
        pool=build_pool(spec, rollout.n * draw_size, c["rollout"]),
        train_env=spec.build(),
        eval_env=eval_spec.build(),
        eval_spec=eval_spec,
        eval_pool=build_pool(eval_spec, c["eval_batch"], c["rollout"]),
        rollout=rollout,
        analyst=analyst,
    )


def train_one(c: dict, run_dir: Path, between_steps: Callable[[], None] | None = None) -> None:
    """Train (or resume) one learner in ``run_dir`` from a resolved train config;
    ``between_steps`` runs after each step (a parallel comparison's thread share)."""
    from envs.config import build_config, check_not_held_out
    from learners.training.checkpoint import load_trainer_state, recover_checkpoint
    from learners.training.distributed import start_ranks, stop_ranks
    from learners.training.tracking import TrackingConfig, make_trackers
    from learners.training.train import TrainConfig, Trainer

    check_not_held_out(c["env"]["split"], c["env"]["test_splits"], "training")
    train_cfg = build_config(TrainConfig, c["train"], "train")
    checkpoint = recover_checkpoint(run_dir / "checkpoint")
    finished = checkpoint is not None and load_trainer_state(checkpoint)["step"] >= train_cfg.steps
    if finished:
        log.info(f"{run_dir} already finished {train_cfg.steps} steps")  # no model loaded
        return
    tracking_cfg = build_config(TrackingConfig, c["tracking"], "tracking")
    name = c["learner"]["name"]
    options = learner_options(c)
    parts = run_parts(c, train_cfg.draw_size)
    ranks = start_ranks(train_cfg.rank_timeout_s)
    trainer = Trainer(run_dir, parts, name, options, train_cfg, ranks)
    trainer.resume()
    if not ranks.leader:  # a learner rank: rank 0 keeps the run's records
        trainer.run()
        stop_ranks(ranks)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "env": c["env"]["name"],
        "learner": name,
        "seed": train_cfg.seed,
        "model": c["model"]["init_from"] or c["model"]["name"],
        "precision": {
            "sampler": _sampler_precision(c["model"]),
            "learner_autocast": trainer.precision.record(),
        },
        "config": c,
    }
    log.info(f"learner autocast: {trainer.precision.describe()}")
    (run_dir / "run.json").write_text(json.dumps(record, indent=1))
    with ExitStack() as closing:
        trackers = make_trackers(tracking_cfg, run_dir, record)
        for tracker in trackers:  # closed even when the run fails, flushing what it logged
            closing.callback(tracker.close)
        bar = closing.enter_context(
            tqdm(total=train_cfg.steps, initial=trainer.start_step - 1, desc=name)
        )

        def track(step, metrics):
            for tracker in trackers:
                tracker.log(step, metrics)

        def on_step(step, metrics):
            track(step, metrics)
            bar.set_postfix(
                success=f"{metrics.get('rollout/success', 0):.2f}",
                update="yes" if metrics["train/updated"] else "NO (no mixed group)",
                s=f"{metrics['time/step_s']:.0f}",
            )
            bar.update(1)
            if between_steps:
                between_steps()

        n_eval = len(trainer.eval_task_ids())
        eval_bars: dict[int, tqdm] = {}

        def on_eval_tasks(step, done):
            if step not in eval_bars:
                eval_bars[step] = tqdm(total=n_eval, desc=f"evaluate step {step}", leave=False)
            eval_bars[step].update(done)
            if eval_bars[step].n >= n_eval:
                eval_bars.pop(step).close()

        log.info(f"held-out evaluation: {n_eval} tasks (floor and ceiling scored first)")
        trainer.run(on_step, on_eval=track, on_eval_tasks=on_eval_tasks)
    stop_ranks(ranks)
    from learners.reports.comparison import updated_steps

    last = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[-1])
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    updates = updated_steps(steps)
    log.info(
        f"{name} seed {train_cfg.seed}: held-out pass@1 {last['eval/success']:.3f} "
        f"(do-nothing floor {last['eval/do_nothing_floor']:.3f}); "
        f"updates: {updates} of {len(steps)} steps; run dir {run_dir}"
    )
    if updates * 2 < len(steps):
        log.warning(
            f"warning: {len(steps) - updates} of {len(steps)} steps found no mixed group and "
            "took no gradient step; the model barely trained (raise train.max_draws or "
            "groups_per_step, or start from a model that sometimes succeeds)"
        )


def compare_runs(cfg: DictConfig) -> dict[str, dict]:
    """The train config of each learner x seed of a compare, by run directory name."""
    from hydra import compose

    base = [o for o in HydraConfig.get().overrides.task if o.split("=")[0] not in COMPARE_KEYS]
    runs = {}
    for learner in cfg.learners:
        for seed in cfg.seeds:
            overrides = [*base, f"learner={learner}", f"train.seed={seed}"]
            c = OmegaConf.to_container(compose("train", overrides=overrides), resolve=True)
            runs[f"{learner}-seed{seed}"] = c
    return runs


def run_compare(cfg: DictConfig) -> None:
    """Each learner x seed on identical tasks, user and seeds, then the report."""
    from learners.reports.report import ReportConfig, write_report

    out = Path(cfg.out_dir) if cfg.out_dir else _output_dir()
    runs = compare_runs(cfg)
    if cfg.parallel > 1:
        _train_in_processes(runs, out, cfg.parallel, cfg.verbose)
    else:
        for i, (name, c) in enumerate(runs.items(), 1):
            log.info(f"run {i}/{len(runs)}: {c['learner']['name']}, seed {c['train']['seed']}")
            train_one(c, out / name)
    report = write_report(out, ReportConfig(baseline=cfg.baseline))
    log.info(f"report: {report}")


def _train_in_processes(runs: dict[str, dict], out: Path, parallel: int, verbose: bool) -> None:
    """``parallel`` runs at a time, each in its own process with an equal share of the
    intra-op threads among the runs still training (:mod:`learners.training.thread_share`): one
    process leaves a core idle whenever it runs Python (env steps, scoring, a decode step's
    dispatch), and one thread per process also spends less on synchronising small ops.
    Every run probes no dtype itself (they would time the CPU while the others load it):
    they adopt this process's probe figures."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    from agents.precision import probe_cpu
    from learners.training.thread_share import ThreadShare

    context = multiprocessing.get_context("spawn")  # no forked torch/Ray state
    share = ThreadShare(
        total=torch.get_num_threads(),
        slots=min(parallel, len(runs)),
        unfinished=context.Value("i", len(runs)),
    )
    log.info(f"{len(runs)} runs, {parallel} at a time, {share.threads()} thread(s) each")
    # a fresh process per run (max_tasks_per_child): a process reused for a third run held
    # 11.3 GB here, beside another at 9.9, and was killed for memory; one run alone peaks at
    # ~6 GB (a run's freed memory is not all given back to the system)
    with ProcessPoolExecutor(
        share.slots,
        mp_context=context,
        initializer=_start_run_process,
        initargs=(share, probe_cpu(), verbose),
        max_tasks_per_child=1,
    ) as pool:
        futures = {pool.submit(_train_logged, c, out / name): name for name, c in runs.items()}
        for done, future in enumerate(as_completed(futures), 1):
            future.result()  # a failed run fails the comparison, as in one process
            log.info(f"run {done}/{len(runs)} finished: {futures[future]}")


_thread_share = None  # a run process's ThreadShare, set by its initializer
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """End this process (SIGTERM) when the process that started it ends. A compare killed
    by a signal sent to it alone (kill, a scheduler's timeout; a terminal's Ctrl-C reaches
    the whole group) otherwise left its runs training as orphans, holding the cores and
    4-9 GB each. Linux only; elsewhere a no-op."""
    if sys.platform == "linux":
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start_run_process(share, probe: dict[str, float], verbose: bool) -> None:
    from agents.precision import adopt_probe

    die_with_parent()
    global _thread_share
    _thread_share = share  # applied by _train_logged before each run and between steps
    adopt_probe(probe)
    if not verbose:
        quiet_third_party()


def _train_logged(c: dict, run_dir: Path) -> None:
    """``train_one`` in a run process, its messages prefixed with the run's name."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(run_dir / "train.log")]
    handlers[0].setFormatter(logging.Formatter(f"[{run_dir.name}] %(message)s"))
    handlers[1].setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    _thread_share.apply()  # a run that starts after others finished takes a larger share
    try:
        train_one(c, run_dir, between_steps=_thread_share.apply)
    finally:
        _thread_share.run_finished()


COMPARE_KEYS = ("learners", "seeds", "baseline", "out_dir", "parallel")


COMMANDS: dict[str, Callable[[DictConfig], None]] = {
    "tasks": show_tasks,
    "replay": run_replay,
    "rollout": run_rollout,
    "evaluate": run_evaluate,
    "sft": run_sft,
    "train": run_train,
    "compare": run_compare,
}


def describe(name: str) -> str:
    """A command's one-line description: the first comment line of its config."""
    return (CONFIG_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ").strip()


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {n:<{width}}  {describe(n)}" for n in COMMANDS]
    return "\n".join(
        [
            "usage: toolgym <command> [key=value ...]   (toolgym <command> --help: its options)",
            "commands:",
            *lines,
        ]
    )


def _compose(name: str, overrides: list[str], hydra_config: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=hydra_config)


def command_help(name: str) -> str:
    """The command, its config groups with their options, and its other options."""
    cfg = _compose(name, [], hydra_config=True)
    choices = cfg.hydra.runtime.choices
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra")
    lines = [f"toolgym {name}: {describe(name)}", f"usage: toolgym {name} [key=value ...]"]
    groups = [k for k in plain if (CONFIG_DIR / k).is_dir()]
    if groups:
        lines.append("groups (group=option; group.key=value sets one of its keys):")
        for group in groups:
            options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
            lines.append(f"  {group}: {', '.join(options)} (now {choices.get(group)})")
    lines.append("options (now):")
    for key, value in plain.items():
        if key in groups:
            continue
        if isinstance(value, dict):
            lines += [f"  {key}.{k}={json.dumps(v)}" for k, v in value.items()]
        else:
            lines.append(f"  {key}={json.dumps(value)}")
    return "\n".join(lines)


def quiet_third_party() -> None:
    """No transformers progress bars ("Loading weights", "Writing model shards", dozens in
    a compare) or warnings between toolgym's own lines; ``verbose=true`` keeps them."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _fail(name: str, message: str) -> None:
    print(f"toolgym {name}: {message}" if name else f"toolgym: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    from hydra.errors import HydraException

    from envs.config import ConfigError, did_you_mean
    from envs.tau2_engine import DataIntegrityError
    from learners.preflight import check_before_work, check_compare, hydra_error

    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    name = args[0]
    if name not in COMMANDS:
        _fail("", f"no command {name!r}{did_you_mean(name, list(COMMANDS))}")
    if "-h" in args or "--help" in args:
        print(command_help(name))
        sys.exit(0)
    # Hydra's own errors (unknown group option or key, bad syntax), reworded, before its app
    overrides = [
        a
        for a in args[1:]
        if a.startswith("hydra.searchpath") or not a.startswith(("-", "hydra.", "hydra/"))
    ]
    try:
        _compose(name, overrides)
    except HydraException as e:
        _fail(name, hydra_error(e, OmegaConf.to_container(_compose(name, []))))
    sys.argv = [sys.argv[0], *args[1:]]
    command = COMMANDS[name]

    def task(cfg: DictConfig) -> None:
        try:
            c = OmegaConf.to_container(cfg, resolve=True)
            if not c["verbose"]:
                quiet_third_party()
            check_before_work(name, c)
            if name == "compare":
                check_compare(c, list(compare_runs(cfg).values()))
            command(cfg)
        except HydraException as e:
            _fail(name, hydra_error(e))
        except (ConfigError, DataIntegrityError) as e:
            _fail(name, str(e))

    hydra.main(config_path=str(CONFIG_DIR), config_name=name, version_base="1.3")(task)()


if __name__ == "__main__":
    main()
