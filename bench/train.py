"""The one training loop every method shares: AdamW, linear warmup/decay, clipping, per-epoch
evaluation on every dev split, best epoch by the task's main metric, early stopping."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from bench.batching import collate, sorted_batches, training_batches
from bench.errors import NonFiniteLoss
from bench.metrics import compute_metrics
from bench.record import eval_metric
from bench.signals import raise_if_terminated
from bench.tasks import Task
from methods.base import Method

OPTIONAL_COLUMNS = ("special_tokens_mask",)


@dataclass
class Prepared:
    """Tokenised splits ready for batching."""

    task: Task
    train: dict
    dev: dict[str, dict]  # split name -> encoded columns; the first one picks the best epoch
    pad_id: int
    extra_columns: tuple[str, ...] = ()  # batch columns the method reads (PASTA: special_tokens_mask)
    test: dict[str, dict] = field(default_factory=dict)  # labelled test splits, scored once at the best epoch
    sources: dict[str, tuple] = field(
        default_factory=dict
    )  # split -> (where it was read, content digest, rows)


@dataclass
class TrainResult:
    best_epoch: int
    best_step: int
    best_metrics: dict[str, dict[str, float]]  # split -> metrics at the best epoch
    best_predictions: dict = field(default_factory=dict)  # split -> predictions at the best evaluation
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    epochs_run: float = 0.0
    train_seconds: float = 0.0  # the steps only: evaluations and the best-state snapshots excluded
    first_step_seconds: float = 0.0  # loop start to the end of step 1: one-time setup + the first step
    train_samples: int = 0
    eval_seconds: float = 0.0
    eval_samples: int = 0
    stopped: str = "budget"  # budget | patience
    train_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def batch_for(prep: Prepared, data: dict, indices: list[int], device) -> dict:
    batch = collate(data, indices, prep.pad_id, float_labels=prep.task.task_kind.float_labels)
    for optional in OPTIONAL_COLUMNS:  # the model's forward must not receive columns no method asked for
        if optional not in prep.extra_columns:
            batch.pop(optional, None)
    if device.type == "cuda":  # from pinned memory the copy is asynchronous; from pageable it may wait
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


# On CPU, evaluation is fastest at about 1,024 padded tokens a batch: larger batches spill the attention and
# FFN activations out of cache (MiniLM, 2 cores: RTE 96 samples/s at 1,024 tokens vs 61 at batch 128 of up to
# 128 tokens; SST-2 263 vs 230; CoNLL 297 vs 228). A GPU wants the full batch.
CPU_EVAL_TOKENS = 1024


@torch.inference_mode()
def predict(
    model, prep: Prepared, data: dict, batch_size: int, autocast, progress: str | None = None
) -> list:
    """Predictions in input order: class ids, scores, or per-token class ids. progress: a label for a
    progress bar over the batches (none when None)."""
    model.eval()
    device = next(model.parameters()).device
    lengths = data["input_ids"].lengths.tolist()
    out: list = [None] * len(lengths)
    kind = prep.task.task_kind
    batches = sorted_batches(lengths, batch_size, CPU_EVAL_TOKENS if device.type == "cpu" else None)
    for indices in tqdm(
        batches, desc=progress, unit="batch", leave=False, disable=None if progress else True
    ):
        batch = batch_for(prep, data, indices, device)
        batch.pop("labels")
        with autocast():
            logits = model(**batch).logits.float()
        for i, p in zip(indices, kind.predictions(logits, lengths, indices), strict=True):
            out[i] = p
    return kind.finish(prep.task, out, data)


def evaluate(
    model,
    prep: Prepared,
    batch_size: int,
    autocast,
    splits: dict | None = None,
    progress: bool = False,
    keep: dict | None = None,
) -> dict[str, dict]:
    """Metrics of every split in `splits` (default: the dev splits, then the task's pooled splits, e.g. MNLI's
    dev_all: their predictions scored together), with a progress bar per split if asked; `keep`, if given,
    receives each split's predictions."""
    gold = prep.task.task_kind.gold
    chosen = prep.dev if splits is None else splits
    scored = {
        split: (
            predict(model, prep, data, batch_size, autocast, f"eval {split}" if progress else None),
            gold(data),
        )
        for split, data in chosen.items()
    }
    out = {split: compute_metrics(prep.task, p, g) for split, (p, g) in scored.items()}
    if keep is not None:
        keep.update({split: p for split, (p, _g) in scored.items()})
    for name, parts in (prep.task.pooled_splits if splits is None else {}).items():
        if all(p in scored for p in parts):
            out[name] = compute_metrics(
                prep.task, [x for p in parts for x in scored[p][0]], [x for p in parts for x in scored[p][1]]
            )
    return out


def constant(step: int) -> float:
    """A parameter group whose lr never changes (Diff pruning's gate logits: the reference never steps their
    scheduler)."""
    return 1.0


def lr_factor(schedule: str, warmup: int, total: int):
    """The lr multiplier at an optimizer step: linear warmup over `warmup` steps, then linear decay to 0 at
    `total` (transformers' get_linear_schedule_with_warmup) or flat (its constant_schedule_with_warmup).
    Written out because those functions give every parameter group one lambda, and a group may keep its lr."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return 1.0 if schedule == "constant" else max(0.0, (total - step) / max(1, total - warmup))

    return factor


def train(
    model,
    prep: Prepared,
    cfg,
    accelerator,
    stored_names: set[str],
    log: Callable[[dict, int], None],
    on_eval: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    sync_timers: bool = False,
    method=None,
    method_cfg=None,
    first_batches: list[list[int]] | None = None,
) -> TrainResult:
    """Trains `model` in place and leaves it holding the weights of the best evaluation.

    Best = highest main metric on the first dev split; ties keep the earlier evaluation.
    `on_eval(epoch, metrics)` may raise to stop (Optuna pruning). `sync_timers` synchronises CUDA around
    each timed phase (exact time split for `bench perf`, at some cost in speed). `method` (with its config)
    supplies the optimizer's parameter groups, an optional extra loss term and a hook after each optimizer
    step (methods/base.py); without it, the base Method's defaults apply. `first_batches`, if given, are the
    first epoch's batches (row indices), instead of its draw: `bench perf` orders the batches it measures."""
    task = prep.task
    main_split = next(iter(prep.dev))
    device = accelerator.device
    # Fused: one kernel over all tensors (the Trainer's default too); `bench perf` showed the per-tensor
    # AdamW at 8% of a full fine-tuning step on CPU.
    if method is None:
        method = Method()
    groups = [g for g in method.param_groups(model, method_cfg, cfg.weight_decay) if g["params"]]
    optimizer = torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(0.9, cfg.adam_beta2), eps=cfg.adam_eps, fused=True
    )
    lengths_np = prep.train["input_ids"].lengths
    lengths = lengths_np.tolist()
    steps_per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    total = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)  # max_steps overrides epochs (as in HF)
    warmup = int(cfg.warmup_ratio * total)
    # Loss curves with at least ~10 points: a short run logs more often than log_every, and the last step
    # always logs its window.
    log_every = max(1, min(cfg.log_every, total // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        [
            constant if g.get("schedule") == "constant" else lr_factor(cfg.lr_schedule, warmup, total)
            for g in groups
        ],
    )
    # Clipped apart where a method asks (Diff pruning clips its diff and its gate logits separately, as its
    # reference does); otherwise every trainable tensor together.
    clip_sets: dict[str, list] = {}
    for g in groups:
        clip_sets.setdefault(g.get("clip_group", "all"), []).extend(g["params"])
    if cfg.gradient_checkpointing:  # non-reentrant: works with frozen inputs and keeps the dropout masks
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # Data-parallel under torchrun / accelerate launch: `forward` is the DistributedDataParallel wrapper,
    # `model`
    # stays the plain module (its names are the checkpoint's; the wrapper shares its parameters).
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    world, rank = accelerator.num_processes, accelerator.process_index
    # The compiled wrapper shares the parameters too.
    forward = torch.compile(wrapped) if cfg.compile else wrapped
    generator = torch.Generator().manual_seed(cfg.seed)

    res = TrainResult(best_epoch=0, best_step=0, best_metrics={})
    # selection: after each evaluation, the best state's snapshot and logging (a one-time cost per evaluation,
    # kept out of the training time: `bench perf` scales the steady step time to an epoch)
    t = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0, "eval": 0.0, "selection": 0.0}
    sync = torch.cuda.synchronize if device.type == "cuda" and sync_timers else (lambda: None)
    tokens = 0  # real (non-pad) training tokens, for FLOP/s
    best_value, best_state, bad_epochs, step, epoch = -math.inf, None, 0, 0, 0
    # The best evaluation's snapshot holds what training can change: the stored parameters that are trainable
    # when training starts (a method may freeze one later, as Diff pruning does its gates, and change it
    # then). A stored parameter frozen from the start keeps its value; copying it would double the memory of
    # a random init (all weights stored: 1.3 GB more for BERT-large, found by `bench perf`).
    snapshot = {n for n, p in model.named_parameters() if n in stored_names and p.requires_grad}
    # disable=None when asked for: tqdm then stays quiet unless stderr is a terminal (a redirected log gets
    # no carriage-return frames)
    bar = tqdm(total=total, desc="train", unit="step", disable=None if progress else True, leave=False)
    # The step's loss stays on the device until the log reads the window's losses at once: reading it every
    # step (.item()) would make the host wait for each forward before queueing the backward, and a GPU would
    # idle while the host queues. A loss that is not finite is still reported at its own step, and before
    # any evaluation or the end of training.
    window: list[torch.Tensor] = []  # the losses of steps window_first, window_first + 1, ...
    window_first = 1
    window_values: list[float] = []

    def read_window() -> list[float]:
        if window:
            values = torch.stack(window).float().tolist()  # one host sync
            for i, value in enumerate(values):
                if not math.isfinite(value):
                    raise NonFiniteLoss(f"loss became {value} at step {window_first + i}")
            window_values.extend(values)
            window.clear()
        return window_values

    def run_eval(tag_epoch: int):
        nonlocal best_value, best_state, bad_epochs
        read_window()
        t0 = time.perf_counter()
        predictions: dict = {}
        metrics = evaluate(
            forward, prep, cfg.eval_batch_size, accelerator.autocast, progress=progress, keep=predictions
        )
        dt = time.perf_counter() - t0
        t["eval"] += dt
        res.eval_seconds += dt
        res.eval_samples += sum(len(d["labels"]) for d in prep.dev.values())
        flat = {eval_metric(split, k): v for split, m in metrics.items() for k, v in m.items()}
        log({**flat, "epoch": step / steps_per_epoch}, step)
        res.history.append({"epoch": tag_epoch, "step": step, **flat})
        value = metrics[main_split][cfg.select_metric or task.main_metric]
        if value > best_value and method.eval_selectable(
            method_cfg, step, total
        ):  # strict: ties keep the earlier
            best_value, bad_epochs = value, 0
            best_state = {n: p.detach().clone() for n, p in model.named_parameters() if n in snapshot}
            res.best_epoch, res.best_step, res.best_metrics = tag_epoch, step, metrics
            res.best_predictions = predictions
        else:
            bad_epochs += 1
        t["selection"] += time.perf_counter() - t0 - dt
        if on_eval is not None:
            on_eval(tag_epoch, metrics)
        forward.train()

    forward.train()
    t_start = time.perf_counter()
    try:
        while step < total:
            epoch += 1
            t0 = time.perf_counter()
            if epoch == 1 and first_batches is not None:
                batches = first_batches
            else:
                batches = training_batches(cfg.batch_order, lengths, cfg.batch_size, generator)
            t["data"] += time.perf_counter() - t0
            for indices in batches:
                raise_if_terminated()
                t0 = time.perf_counter()
                # Each process takes every world-th example of the global batch: the mean of the processes'
                # gradients (DDP) is the global batch's, so the batch size and steps are those asked for. A
                # last batch smaller than the world repeats its first example on the idle processes.
                mine = indices[rank::world] or indices[:1] if world > 1 else indices
                batch = batch_for(prep, prep.train, mine, device)
                tokens += int(lengths_np[indices].sum())  # from the host copy: no device sync
                sync()
                t1 = time.perf_counter()
                with accelerator.autocast():
                    loss = forward(**batch).loss
                    extra = method.loss_term(model, method_cfg, step, total)
                if extra is not None:  # a method's regulariser (Diff pruning's L0 penalty)
                    loss = loss + extra
                if not window:
                    window_first = step + 1
                window.append(loss.detach())
                t2 = time.perf_counter()
                accelerator.backward(loss)
                sync()
                t3 = time.perf_counter()
                if cfg.max_grad_norm:
                    for params in clip_sets.values():
                        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                method.after_step(
                    model, method_cfg, step + 1, total
                )  # the step's gradients still there (AdaLoRA)
                optimizer.zero_grad(set_to_none=True)
                sync()
                t4 = time.perf_counter()
                step += 1
                if step == 1:
                    res.first_step_seconds = time.perf_counter() - t_start
                res.train_samples += len(indices)
                t["data"] += t1 - t0
                t["forward"] += t2 - t1
                t["backward"] += t3 - t2
                t["optimizer"] += t4 - t3
                bar.update(1)
                if step % log_every == 0 or step >= total:
                    losses = read_window()
                    mean = sum(losses) / len(losses)
                    log({"train_loss": mean, "lr": scheduler.get_last_lr()[0]}, step)
                    bar.set_postfix(loss=f"{mean:.4f}")
                    losses.clear()
                if cfg.eval_every_steps and step % cfg.eval_every_steps == 0 and step < total:
                    run_eval(epoch)
                if step >= total:
                    break
            run_eval(epoch)
            if cfg.patience and bad_epochs >= cfg.patience:
                res.stopped = "patience"
                break
    except Exception:  # a failure after a loss that was not finite is reported as that loss
        read_window()
        raise
    bar.close()
    res.steps, res.epochs_run = step, step / steps_per_epoch
    res.train_seconds = time.perf_counter() - t_start - t["eval"] - t["selection"]
    res.timings = t
    res.train_tokens = tokens
    if best_state is not None:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for n, v in best_state.items():
                params[n].copy_(v)
    return res
