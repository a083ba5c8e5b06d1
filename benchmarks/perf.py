"""`bench perf` (benchmark tooling, outside the core that trains): the same (model, method, task,
hyperparameters, batch, seed, steps) through bench's own
loop and through the HF Trainer configured as users do it — (a) run_glue style, every example padded to
max length 128; (b) dynamic padding + group_by_length — alternated over repetitions, medians and ratios
printed side by side. All numbers come from this one invocation on this machine."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import scipy.stats  # noqa: F401 - loaded before anything is timed: bench scores inside its eval time
import seqeval.metrics  # noqa: F401
import sklearn.metrics  # noqa: F401
import torch
import yaml
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from bench import tracking
from bench.batching import training_batches
from bench.build import build_model, check_applies, prepare_data
from bench.config import RunConfig
from bench.data import load_examples
from bench.device import flush_denormals, make_accelerator
from bench.encoding import IGNORE_INDEX, cached_encode, encode, split_rows
from bench.errors import BenchError
from bench.logs import quiet_libraries
from bench.metrics import compute_metrics
from bench.models import load_tokenizer
from bench.params import flops_per_token
from bench.resolve import build_config
from bench.tasks import REGRESSION, TAGGING, get_task
from bench.train import CPU_EVAL_TOKENS, train
from benchmarks.memory import peak_memory
from benchmarks.references import LABELS, reference_model, references, skipped
from methods import get_method, reference_method

# `python -P -m`: without -P the working directory would come first on sys.path, where a folder named like
# one of our packages (methods/, reports/) would shadow it.
PYTHON = [sys.executable, "-P"]


def matmul_peak() -> float:
    """FLOP/s of a large fp32 (CPU) or bf16 (GPU) matrix product on this machine, best of 3."""
    cuda = torch.cuda.is_available()
    n = 4096 if cuda else 2048
    a = torch.randn(n, n, device="cuda" if cuda else "cpu", dtype=torch.bfloat16 if cuda else torch.float32)
    best = 0.0
    for _ in range(3):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            a @ a
        if cuda:
            torch.cuda.synchronize()
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - t))
    return best


def steady_step(r: dict) -> float:
    """Seconds per optimizer step after the first: the first pays one-time setup (the Trainer's length
    grouping reads every row's length, bench groups indices) and warm-up, which must not be multiplied
    by the steps of an epoch."""
    return (r["train_s"] - r["first_step_s"]) / (r["steps"] - 1)


def measured_batches(cfg: RunConfig, lengths: list[int], steps: int) -> list[list[int]]:
    """The batches a measurement trains on, bench's loop and the Trainer references alike: the first `steps`
    of the epoch bench draws for the seed, the longest of them moved last. Where it came first (RTE's draw
    for seed 42 opens with its longest batch, 108 tokens against 35-51), its activations met no optimizer
    state yet, and full fine-tuning's training memory read well below an epoch's, whose longest batch meets
    the AdamW state: the peak a user must provision."""
    seeded = torch.Generator().manual_seed(cfg.seed)
    batches = training_batches(cfg.batch_order, lengths, cfg.batch_size, seeded)
    first = batches[:steps]
    longest = max(range(len(first)), key=lambda i: max(lengths[j] for j in first[i]))
    return first[:longest] + first[longest + 1 :] + [first[longest]]


def eval_subset(data: dict, n: int | None) -> dict:
    """The first n rows of an encoded split (all of them when n is None): `--eval-samples`."""
    return data if n is None else split_rows(data, np.arange(min(n, len(data["labels"]))))


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_bench(cfg: RunConfig, steps: int, eval_samples: int | None = None) -> dict:
    task = get_task(cfg.task)
    cfg = cfg.replace(max_steps=steps)
    flush_denormals(cfg.flush_denormal)  # as bench.runner does before building (the Trainer's runs do not)
    built = build_model(cfg, task)
    t0 = time.perf_counter()
    prep = prepare_data(cfg, task, built)  # cached after the first repetition
    prep.dev = {split: eval_subset(data, eval_samples) for split, data in prep.dev.items()}
    data_s = time.perf_counter() - t0
    accelerator, _ = make_accelerator(cfg.precision)
    with peak_memory(built.model) as mem:
        res = train(
            built.model,
            prep,
            cfg,
            accelerator,
            built.stored_names,
            lambda *a: None,
            progress=False,
            sync_timers=True,
            first_batches=measured_batches(cfg, prep.train["input_ids"].lengths.tolist(), steps),
        )
    main = task.dev_splits[0]
    return {
        "train_s": res.train_seconds,
        "first_step_s": res.first_step_seconds,
        "tokens": res.train_tokens,
        "eval_s": res.eval_seconds,
        "eval_n": res.eval_samples,
        "metric": res.best_metrics[main][task.main_metric],
        "trainable": trainable(built.model),
        "timings": res.timings,
        "mem": mem,
        "load_data_s": data_s,
        "steps": res.steps,
        "flops_per_token": flops_per_token(built.model, not built.method.frozen_backbone),
        # What the method reports of itself after training (SAID/DID: projection state bytes per parameter).
        "method_counts": built.method.counts_after_training(built.model, built.method_config),
    }


def run_trainer(
    cfg: RunConfig,
    steps: int,
    pad_to_max: bool,
    ref: str = "ours",
    eval_samples: int | None = None,
    bench_batches: bool = False,
) -> dict:
    """The reference: transformers.Trainer on the same model with the method as `ref` attaches it
    (benchmarks/references.py), users' defaults otherwise (eval batch 8). bench_batches: the Trainer trains on
    the batches bench's loop draws for the same seed, in its order, instead of its own length-grouped sampler
    (per-step work then differs only by the loops, not by which rows a few steps happened to draw)."""
    task = get_task(cfg.task)
    built = reference_model(ref, cfg, task)
    prep = prepare_data(cfg, task, built)
    tok = built.tokenizer
    # + the columns the method reads (PASTA: special_tokens_mask), which the Trainer must not drop
    keep = [
        k for k in ("input_ids", "token_type_ids", "labels", *built.method.batch_columns) if k in prep.train
    ]

    def dataset(cols):
        ds = Dataset.from_dict({k: cols[k].tolist() for k in keep})
        if pad_to_max:  # run_glue's --pad_to_max_length (its default): every row padded to max_length

            def pad(row):
                n = cfg.max_length - len(row["input_ids"])
                out = {
                    "input_ids": row["input_ids"] + [tok.pad_token_id] * n,
                    "attention_mask": [1] * len(row["input_ids"]) + [0] * n,
                }
                if "token_type_ids" in row:
                    out["token_type_ids"] = row["token_type_ids"] + [0] * n
                if "special_tokens_mask" in row:
                    out["special_tokens_mask"] = row["special_tokens_mask"] + [1] * n
                if task.kind == TAGGING:
                    out["labels"] = row["labels"] + [IGNORE_INDEX] * n
                return out

            ds = ds.map(pad)
        return ds

    collator = (
        default_data_collator
        if pad_to_max
        else DataCollatorForTokenClassification(tok)
        if task.kind == TAGGING
        else DataCollatorWithPadding(tok)
    )
    cuda = torch.cuda.is_available()
    # transformers 5.2x renamed gradient_checkpointing (the old name still works, with a warning)
    ckpt = (
        "activation_checkpointing"
        if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
        else "gradient_checkpointing"
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=8,
            max_steps=steps,
            learning_rate=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_steps=int(cfg.warmup_ratio * steps),
            max_grad_norm=cfg.max_grad_norm,
            lr_scheduler_type="linear",
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            seed=cfg.seed,
            remove_unused_columns=not built.method.batch_columns,
            train_sampling_strategy="random" if pad_to_max else "group_by_length",
            dataloader_num_workers=0,
            use_cpu=not cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            **{ckpt: cfg.gradient_checkpointing, f"{ckpt}_kwargs": {"use_reentrant": False}},
            disable_tqdm=True,
        )
        step_ends = []

        class StepClock(TrainerCallback):
            def on_step_end(self, *args, **kwargs):
                step_ends.append(time.perf_counter())

        class BenchBatches(Trainer):
            def get_train_dataloader(self):
                order = measured_batches(cfg, prep.train["input_ids"].lengths.tolist(), steps)
                return self.accelerator.prepare(
                    DataLoader(self.train_dataset, batch_sampler=order, collate_fn=self.data_collator)
                )

        trainer = (BenchBatches if bench_batches else Trainer)(
            model=built.model,
            args=args,
            train_dataset=dataset(prep.train),
            data_collator=collator,
            callbacks=[StepClock()],
        )
        dev = eval_subset(prep.dev[task.dev_splits[0]], eval_samples)
        dev_ds = dataset(dev)  # built beforehand, as a user's script does; scoring is timed, as bench's is
        # memory over training and the evaluation after it, as bench's train() holds both
        with peak_memory(built.model) as mem:
            with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its metrics
                t = time.perf_counter()
                trainer.train()
                train_s, first_step_s = step_ends[-1] - t, step_ends[0] - t
            t = time.perf_counter()
            out = trainer.predict(dev_ds)
        logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
        if task.kind == REGRESSION:
            preds = logits.squeeze(-1).tolist()
        elif task.kind == TAGGING:
            preds = [
                row[: len(ids)].tolist() for row, ids in zip(logits.argmax(-1), dev["input_ids"], strict=True)
            ]
        else:
            preds = logits.argmax(-1).tolist()
        metric = compute_metrics(task, preds, dev["labels"])[task.main_metric]
        eval_s = time.perf_counter() - t
    return {
        "train_s": train_s,
        "first_step_s": first_step_s,
        "steps": len(step_ends),
        "eval_s": eval_s,
        "eval_n": len(dev["labels"]),
        "metric": metric,
        "mem": mem,
        "trainable": trainable(built.model),
    }


DRAWS = {"length": "length-grouped", "uniform": "plainly shuffled", "buffer100": "buffered"}  # batch_order
KINDS = ("bench", "trainer_pad128", "trainer_dynamic")  # + "ref:<reference>" (benchmarks/references.py)


def measure(kind: str, cfg: RunConfig, steps: int, eval_samples: int | None = None) -> dict:
    """One measurement in a fresh process: memory peaks and allocator caches of earlier measurements
    must not leak into this one."""
    proc = subprocess.run(
        [
            *PYTHON,
            "-m",
            "benchmarks.perf",
            kind,
            str(steps),
            json.dumps(cfg.to_dict()),
            str(eval_samples or 0),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"perf measurement {kind} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure_here(kind: str, steps: int, cfg_json: str, eval_samples: int) -> None:
    quiet_libraries()
    cfg = RunConfig(**json.loads(cfg_json))
    n = eval_samples or None
    if kind == "bench":
        out = run_bench(cfg, steps, n)
    else:
        ref = kind.removeprefix("ref:") if kind.startswith("ref:") else "ours"
        out = run_trainer(
            cfg,
            steps,
            pad_to_max=kind == "trainer_pad128",
            ref=ref,
            eval_samples=n,
            bench_batches=kind.startswith("ref:"),
        )
    print(json.dumps(out, default=float))


class Measurements:
    """Every fresh-process measurement of one `bench perf` call by (kind, configuration), in the order taken:
    a configuration both tables need (bench's full FT) is measured once per repetition."""

    def __init__(self, steps: int, eval_samples: int | None, echo):
        self.steps, self.eval_samples, self.echo, self.runs = steps, eval_samples, echo, {}

    def _key(self, kind: str, cfg: RunConfig) -> tuple:
        return kind, json.dumps(cfg.to_dict(), sort_keys=True)

    def take(self, kind: str, cfg: RunConfig, rep: int, label: str) -> None:
        runs = self.runs.setdefault(self._key(kind, cfg), [])
        if len(runs) <= rep:
            self.echo(label)
            runs.append(measure(kind, cfg, self.steps, self.eval_samples))

    def all(self, kind: str, cfg: RunConfig) -> list[dict]:
        return self.runs[self._key(kind, cfg)]


def epoch_s(run: dict, steps_per_epoch: int) -> float:
    """Time to the end of step 1 (one-time setup + the first step) + steady step time x the other steps."""
    return run["first_step_s"] + steady_step(run) * (steps_per_epoch - 1)


def medians(runs: list[dict], batch_size: int, steps_per_epoch: int) -> dict:
    """Each column of a variant a median over its repetitions."""

    def med(fn):
        return statistics.median(fn(x) for x in runs)

    return {
        "first_step_s": med(lambda x: x["first_step_s"]),
        "metric": med(lambda x: x["metric"]),
        "step_s": med(steady_step),
        "samples_s": med(lambda x: batch_size / steady_step(x)),
        "eval_samples_s": med(lambda x: x["eval_n"] / x["eval_s"]),
        "epoch_s": med(lambda x: epoch_s(x, steps_per_epoch)),
        "mem": med(lambda x: x["mem"]["peak"]),
        "rise": med(lambda x: x["mem"]["rise"]),
        "mem_kind": runs[0]["mem"]["kind"],
    }


def median_run(runs: list[dict]) -> dict:
    """The run with the median steady step: its columns stay consistent with each other."""
    return sorted(runs, key=steady_step)[(len(runs) - 1) // 2]


def compare(
    cfg: RunConfig,
    steps: int,
    repeats: int,
    methods: list[str],
    echo=print,
    eval_samples: int | None = None,
    refused: dict[str, str] | None = None,
) -> dict:
    """The side-by-side measurement. Returns the Markdown (`text`), the configuration measured (`key`), the
    Targets table's rows (`targets`) and when, where and under what load it ran (`stamp`). `refused`: the
    methods left out (refusals()), each with its reason."""
    quiet_libraries()
    load = os.getloadavg()[0]  # before this run's own processes start
    peak = matmul_peak()  # before and after the measurements: the better of two moments on a shared machine
    task = get_task(cfg.task)
    refused = refused or {}
    for reason in refused.values():
        echo(f"not measured: {reason}")
    methods = [m for m in methods if m not in refused]
    built = build_model(cfg, task)
    n_train = len(prepare_data(cfg, task, built).train["labels"])  # warms the cache too
    tokenizer = built.tokenizer
    del (
        built
    )  # measurements run in their own processes: this one need not hold a (BERT-large) model meanwhile
    steps_per_epoch = -(-n_train // cfg.batch_size)
    store = Measurements(steps, eval_samples, echo)
    if methods:
        for line in skipped(method_names(methods), cfg):
            echo(line)  # e.g. peft's prefix tuning on a transformers that renamed past_key_values
    for r in range(repeats):  # alternate, so drift in machine speed hits every variant alike
        for name in KINDS:
            store.take(name, cfg, r, f"repetition {r + 1}/{repeats}: {name}")
    results = {name: store.all(name, cfg) for name in KINDS}
    med = {name: medians(runs, cfg.batch_size, steps_per_epoch) for name, runs in results.items()}
    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}"
    )
    random = cfg.init == "random"
    n_eval = results["bench"][0]["eval_n"]
    metric_cols = [] if random else [f"dev {task.main_metric}"]
    order = "" if cfg.batch_order == "length" else f" / {cfg.batch_order} batches"
    lines = [
        f"## {cfg.method} / {cfg.model}{' (random init)' if random else ''} / {task.name}{order}: bench vs "
        "the HF Trainer",
        f"Machine: {device}; torch {torch.__version__}. Same model init, lr {cfg.lr:g}, batch "
        f"{cfg.batch_size}, "
        f"seed {cfg.seed}, {steps} optimizer steps per variant, {repeats} repetitions alternated; medians. "
        f"Epoch time = time to the end of step 1 (one-time setup, e.g. the Trainer's length grouping "
        f"reading every"
        f" row, + the first step) + steady step time x the other {steps_per_epoch - 1} steps ({n_train} "
        f"training "
        "examples); train samples/s = batch / steady step time. bench's batches: the first "
        f"{steps} of its {DRAWS[cfg.batch_order]} draw for the seed, the longest of them last (it then "
        "meets the optimizer state, as an epoch's longest batch does). "
        + (
            random_init_note(cfg, tokenizer)
            if random
            else f"Dev metric: {task.dev_splits[0]} {task.main_metric} after {steps} steps (data order "
            f"differs "
            "between loops). "
        )
        + f"Evaluation on {n_eval} {task.dev_splits[0]} examples"
        f"{' (the first, --eval-samples)' if eval_samples else ''}: Trainer eval batch 8 (its default); "
        f"bench "
        f"eval batch {cfg.eval_batch_size}{cpu_eval_note()}.",
        "",
        table(
            [
                "variant",
                "epoch s",
                "train samples/s",
                "eval samples/s",
                med["bench"]["mem_kind"] + " MiB",
                *metric_cols,
                "bench speed-up per epoch",
            ],
            [
                [
                    name,
                    f"{m['epoch_s']:.4g}",
                    f"{m['samples_s']:.1f}",
                    f"{m['eval_samples_s']:.1f}",
                    f"{m['mem'] / 2**20:.0f}",
                    *([] if random else [f"{m['metric']:.4f}"]),
                    "-" if name == "bench" else f"{m['epoch_s'] / med['bench']['epoch_s']:.2f}x",
                ]
                for name, m in med.items()
            ],
        ),
    ]
    extra = side_measurements(cfg, task, results["bench"], steps)
    method_rows, reference_rows = [], []
    if methods:
        text, method_rows, peak = methods_table(cfg, steps, methods, repeats, store, peak)
        ref_text, reference_rows = references_table(cfg, methods, store, steps_per_epoch)
        lines += ["", text, "", ref_text]
    if refused:
        reasons = "; ".join(refused.values())
        lines += ["", f"Not measured, refused by the method for this model: {reasons}."]
    targets = targets_table(med, extra, method_rows, reference_rows, cfg)
    lines += ["", "### Targets", "", table(["target", "measured", "goal", "status"], targets)]
    stamp = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": device,
        "load": f"{load:.2f}",
        "matmul_peak": f"{(peak if methods else max(peak, matmul_peak())) / 1e9:.0f} GFLOP/s",
    }
    key = f"{cfg.model}{' (random init)' if random else ''} / {task.name}{order} / batch {cfg.batch_size}" + (
        f" / methods {', '.join(methods)}" if methods else ""
    )
    return {"text": "\n".join(lines), "key": key, "targets": targets, "stamp": stamp}


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
    )


def random_init_note(cfg: RunConfig, tok) -> str:
    stand_in = (
        f"MiniLM's WordPiece tokenizer standing in for {cfg.model}'s (vocabulary {len(tok):,}, the "
        "embedding matrix sized to it; sequence lengths are WordPiece's)"
        if getattr(tok, "stands_in_for", None)
        else "the model's own tokenizer"
    )
    return (
        f"Random init: {cfg.model}'s architecture (bench/archs) with weights drawn from its initialiser "
        f"(seed {cfg.seed}), {stand_in}. Speed and memory only: no dev metric is reported. "
    )


def cpu_eval_note() -> str:
    return "" if torch.cuda.is_available() else f", at most {CPU_EVAL_TOKENS:,} padded tokens a batch on CPU"


def side_measurements(cfg: RunConfig, task, bench_runs: list[dict], steps: int) -> dict:
    """Tokenisation cache speed-up, `bench --help` time, data and tracking shares of a bench run."""
    built = build_model(cfg, task)
    ex = load_examples(task, "train", cfg.data_dir)
    t = time.perf_counter()
    encode(task, ex, built.tokenizer, cfg.max_length)
    fresh = time.perf_counter() - t
    cached_encode(task, "train", ex, built.tokenizer, cfg.max_length, cfg.cache_dir)  # make sure it is stored
    rerun_tokenizer = load_tokenizer(
        cfg.model, task, cfg.init
    )  # as in a new process: its fingerprint is part of the cost
    t = time.perf_counter()
    cached_encode(task, "train", ex, rerun_tokenizer, cfg.max_length, cfg.cache_dir)
    cached = time.perf_counter() - t
    helps = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([*PYTHON, "-m", "bench.cli", "--help"], capture_output=True, check=True)
        helps.append(time.perf_counter() - t)
    # Tracking: what a real run of `steps` steps logs, sent to a real MLflow SQLite store.
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/perf.db"
        with tracking.tracked_run(uri, "perf", "perf", {}) as tr:
            tr.seconds = 0.0
            tr.log_params(cfg.to_dict())
            for step in range(1, steps + 1):
                if step % cfg.log_every == 0:
                    tr.log_metrics({"train_loss": 0.5, "lr": 1e-4}, step)
            tr.log_metrics({f"dev_{k}": 0.5 for k in task.metrics}, steps)
            tr.flush()
            track_s = tr.seconds
    wall = statistics.median(r["train_s"] + r["eval_s"] for r in bench_runs)
    data = statistics.median(r["timings"]["data"] for r in bench_runs)
    return {
        "tok_fresh": fresh,
        "tok_cached": cached,
        "help_s": statistics.median(helps),
        "data_share": data / wall,
        "tracking_share": track_s / wall,
    }


TARGETS = Path(__file__).parent / "targets.yaml"


def targets_table(
    med: dict, extra: dict, method_rows: list[dict], reference_rows: list[dict], cfg: RunConfig
) -> list[list[str]]:
    """Each goal of benchmarks/targets.yaml with the value measured and met / MISSED: rows of
    (target, measured, goal, status)."""
    goals = yaml.safe_load(TARGETS.read_text())
    rows = []

    def row(key: str, value: float, shown: str, random_init: bool = False) -> None:
        goal = goals[key]
        unit = goal.get("unit", "")
        if "at_least" in goal:
            limit, ok, sign = goal["at_least"], value >= goal["at_least"], ">="
        else:
            limit = (
                goal["at_most_random_init"]
                if random_init and "at_most_random_init" in goal
                else goal["at_most"]
            )
            ok, sign = value <= limit, "<="
        limit_text = f"{100 * limit:g}%" if unit == "share" else f"{limit:g}{unit}"
        rows.append([goal["what"], shown, f"{sign} {limit_text}", "met" if ok else "MISSED"])

    pad = med["trainer_pad128"]["epoch_s"] / med["bench"]["epoch_s"]
    dyn = med["trainer_dynamic"]["epoch_s"] / med["bench"]["epoch_s"]
    overhead = extra["data_share"] + extra["tracking_share"]
    tok = extra["tok_fresh"] / max(extra["tok_cached"], 1e-9)
    row("epoch_vs_padding", pad, f"{pad:.2f}x")
    row("epoch_vs_trainer", dyn, f"{dyn:.2f}x")
    row(
        "overhead_share",
        overhead,
        f"{100 * overhead:.1f}% (data {100 * extra['data_share']:.1f}%, "
        f"tracking {100 * extra['tracking_share']:.1f}%)",
    )
    row(
        "tokenisation_cache",
        tok,
        f"{tok:.0f}x ({extra['tok_fresh']:.2f}s -> {extra['tok_cached']:.3f}s, training split)",
    )
    row("help_seconds", extra["help_s"], f"{extra['help_s']:.2f} s")
    frozen = [r for r in method_rows if get_method(r["method"]).frozen_backbone]
    if frozen:
        worst = max(frozen, key=lambda r: r["step_ratio"])
        row("frozen_step", worst["step_ratio"], f"{worst['step_ratio']:.2f} ({worst['method']})")
        for key, goal in (("mem_ratio", "frozen_memory"), ("rise_ratio", "frozen_training_memory")):
            worst = max(frozen, key=lambda r: r[key])
            row(goal, worst[key], f"{worst[key]:.2f} ({worst['method']})", random_init=cfg.init == "random")
    lora = [r for r in method_rows if r["method"] == "lora"]
    if lora:
        row("lora_step", lora[0]["step_ratio"], f"{lora[0]['step_ratio']:.2f}")
    if reference_rows:
        worst = min(reference_rows, key=lambda r: r["speedup"])
        row(
            "reference_epoch",
            worst["speedup"],
            f"{worst['speedup']:.2f}x ({worst['method']}, {worst['reference']})",
        )
    evals = [("full FT, Trainer", med["bench"]["eval_samples_s"] / med["trainer_dynamic"]["eval_samples_s"])]
    evals += [(f"{r['method']}, {r['reference']}", r["eval_ratio"]) for r in reference_rows]
    name, worst = min(evals, key=lambda e: e[1])
    row("eval_throughput", worst, f"{worst:.2f}x ({name})")
    return rows


def methods_table(
    cfg: RunConfig, steps: int, methods: list[str], repeats: int, store: Measurements, peak: float
) -> tuple[str, list[dict], float]:
    """Step time of each method relative to full FT on the same batches, the time split, FLOP/s. Each method
    is measured `repeats` times with its Trainer references (references_table), alternated with the others,
    and the run with the median step kept. `peak`: the matmul peak measured before; returns the one used."""
    names = method_names(methods)
    for rep in range(repeats):
        for name in names:
            c = method_config(cfg, name)
            for kind in ("bench", *(f"ref:{r}" for r in references(name, c))):
                store.take(kind, c, rep, f"method {name}, {kind} ({rep + 1}/{repeats})")
    rows, measured, full = [], [], None
    for name in names:
        r = median_run(store.all("bench", method_config(cfg, name)))
        step = steady_step(r)
        full = full or {"step": step, "peak": r["mem"]["peak"], "rise": r["mem"]["rise"]}
        t = r["timings"]
        total = r["train_s"] + r["eval_s"]
        split = {k: t[k] / total for k in ("data", "forward", "backward", "optimizer")} | {
            "eval": r["eval_s"] / total
        }
        flops = r["flops_per_token"] * r["tokens"] / r["train_s"]
        ratios = {
            "step_ratio": step / full["step"],
            "mem_ratio": r["mem"]["peak"] / full["peak"],
            "rise_ratio": r["mem"]["rise"] / full["rise"],
        }
        measured.append({"method": name, **ratios})
        rows.append(
            (
                [
                    name,
                    f"{1000 * step:.0f}",
                    f"{ratios['step_ratio']:.2f}",
                    *(f"{100 * v:.0f}%" for v in split.values()),
                    f"{r['mem']['peak'] / 2**20:.0f} ({ratios['mem_ratio']:.2f}x)",
                    f"{r['mem']['rise'] / 2**20:.0f} ({ratios['rise_ratio']:.2f}x)",
                ],
                flops,
                method_counts(r.get("method_counts") or {}),
            )
        )
    peak = max(peak, matmul_peak())  # before and after: the better of two moments on a shared machine
    rows = [[*cells, f"{flops / 1e9:.1f} ({100 * flops / peak:.0f}%)", own] for cells, flops, own in rows]
    text = "\n".join(
        [
            f"### Methods on the same batches ({steps} steps, {repeats} repetitions alternated, the run "
            f"with the median "
            "step kept (of two: the faster); "
            f"matmul peak measured here: {peak / 1e9:.0f} GFLOP/s)",
            "Step ms = steady step time (steps 2..N; the first carries one-time setup). Split = share of "
            "train + eval "
            "wall time. Peak memory = peak during "
            "training, each method in a fresh process (CPU: RSS, weights and runtime included; GPU: CUDA "
            "allocated); "
            "training memory = the most memory allocated above what was held when training started (the "
            "loaded model and data): gradients, optimizer state, activations (CPU: the live heap, glibc's "
            "bytes in use, not RSS, which also holds what the allocator kept after frees; GPU: CUDA "
            "allocated). FLOP/s counts 6N per real token where weight "
            "gradients are "
            "computed (full FT, SAID/DID, Diff pruning) and 4N for frozen-backbone methods, N = encoder "
            "parameters "
            "without embeddings (SAID/DID's projection FLOPs not counted). Method's own counts = what the "
            "method reports of "
            "itself after training (e.g. SAID/DID: bytes of projection state kept, in all and per base "
            "parameter).",
            "",
            table(
                [
                    "method",
                    "step ms",
                    "x full FT",
                    "data",
                    "forward",
                    "backward",
                    "optimizer",
                    "eval",
                    "peak memory MiB",
                    "training memory MiB",
                    "model GFLOP/s (of peak)",
                    "method's own counts",
                ],
                rows,
            ),
        ]
    )
    return text, measured, peak


def refusals(cfg: RunConfig, task, methods: list[str]) -> dict[str, str]:
    """Each method that cannot apply to this model, task or options, with its one-line refusal (from the
    model's config alone, before anything is measured). An unknown method name, and whatever the measured
    configuration itself cannot take (an unknown model, a max_length too long for it), fail as bad input
    instead: they are no method's refusal."""
    check_applies(cfg, task)
    out = {}
    for name in methods:
        get_method(name)
        try:
            check_applies(method_config(cfg, name), task)
        except BenchError as e:
            out[name] = str(e)
    return out


def method_names(methods: list[str]) -> list[str]:
    ref = reference_method()
    return [ref, *[m for m in methods if m != ref]]


def method_config(cfg: RunConfig, name: str) -> RunConfig:
    """The configuration a method is timed in: the run's, with the method's default lr (full FT: the
    run's)."""
    if name == reference_method():
        return cfg.replace(method=name, method_options={})
    return build_config({**cfg.to_dict(), "method": name, "method_options": {}, "lr": None})


def references_table(
    cfg: RunConfig, methods: list[str], store: Measurements, steps_per_epoch: int
) -> tuple[str, list[dict]]:
    """Each method through bench against the same method through the Trainer as its users would attach it."""
    rows, measured, none = [], [], []
    for name in method_names(methods):
        c = method_config(cfg, name)
        if not references(name):
            none.append(name)
        ours = store.all("bench", c)
        for ref in references(name, c):
            theirs = store.all(f"ref:{ref}", c)
            b, t = (medians(runs, cfg.batch_size, steps_per_epoch) for runs in (ours, theirs))
            speedup, eval_ratio = t["epoch_s"] / b["epoch_s"], b["eval_samples_s"] / t["eval_samples_s"]
            measured.append(
                {"method": name, "reference": LABELS[ref], "speedup": speedup, "eval_ratio": eval_ratio}
            )
            rows.append(
                [
                    name,
                    LABELS[ref],
                    f"{ours[0]['trainable']:,} / {theirs[0]['trainable']:,}",
                    f"{b['epoch_s']:.4g}",
                    f"{t['epoch_s']:.4g}",
                    f"{speedup:.2f}x",
                    f"{1000 * b['step_s']:.0f} / {1000 * t['step_s']:.0f}",
                    f"{b['rise'] / 2**20:.0f} / {t['rise'] / 2**20:.0f}",
                    f"{b['eval_samples_s']:.1f} / {t['eval_samples_s']:.1f}",
                ]
            )
    note = (
        f" No Trainer reference for {', '.join(none)}: its training needs hooks the Trainer lacks (an extra "
        f"loss"
        " term, a step hook or its own parameter groups)."
        if none
        else ""
    )
    note += "".join(f" {line}." for line in skipped(method_names(methods), cfg))
    return "\n".join(
        [
            "### Each method against its Trainer reference",
            "The same method, model, hyperparameters, seed and batches (bench's, as above, dynamic padding, "
            "fed to the Trainer in the same order) through bench and through "
            "`transformers.Trainer`, the method attached as its users attach it "
            "(benchmarks/references.py: LoRA, peft's other tuners and prefix tuning through peft's "
            "get_peft_model, BitFit as requires_grad "
            "on every bias + the head, the rest with bench's modules); each in a fresh process, alternated, "
            "medians. "
            "Epoch time and training memory as above (both include the evaluation at the end); "
            "trainable = parameters with requires_grad (head included)." + note,
            "",
            table(
                [
                    "method",
                    "reference",
                    "trainable bench / reference",
                    "bench epoch s",
                    "reference epoch s",
                    "bench speed-up per epoch",
                    "step ms bench / reference",
                    "training memory MiB bench / reference",
                    "eval samples/s bench / reference",
                ],
                rows,
            ),
        ]
    ), measured


def method_counts(counts: dict) -> str:
    """A method's own after-training counts, one cell: integers with separators, ratios with 3 digits."""

    def fmt(v):
        return f"{v:,}" if isinstance(v, int) else f"{v:.3g}"

    return "; ".join(f"{k.replace('_', ' ')} {fmt(v)}" for k, v in counts.items()) or "-"


if __name__ == "__main__":
    _measure_here(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
