"""`bench run` and `bench eval`: from a RunConfig to a tracked, evaluated, saved model."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.config import RunConfig, validate
from bench.errors import BenchError


@dataclass
class Built:
    """A model with its method attached, and everything needed to train or evaluate it."""

    model: object
    tokenizer: object
    method: object
    method_config: object
    stored_names: set
    backbone_numel: int
    init_tags: dict = dataclasses.field(default_factory=dict)  # init_from: where the weights started (the chain)


def quiet_libraries() -> None:
    """Keep the terminal for bench's own lines: no load reports, weight bars or MLflow schema notices."""
    import os

    from transformers.utils import logging as hf_logging

    from bench.logs import route_library_logs

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    route_library_logs()  # library INFO lines to the log file, not the terminal
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def plain_name(name: str) -> str:
    """A parameter's name before a method wrapped its module: torch.nn.utils.parametrize
    (`w` -> `parametrizations.w.original`) or peft (`query.weight` -> `query.base_layer.weight`)."""
    return name.replace(".parametrizations.", ".").removesuffix(".original").replace(".base_layer.", ".")


def build_model(cfg: RunConfig, task) -> Built:
    """Pretrained model + head, backbone frozen, method attached, head trainable."""
    import torch

    from bench.families import find
    from bench.models import family, load_model, load_tokenizer, model_config
    from methods import AttachContext, get_method
    from methods.base import apply_method

    method = get_method(cfg.method)
    method_cfg = method.make_config(cfg.method_options)
    conf = model_config(cfg.model, cfg.init)  # read once; every check below needs only it, before weights load
    fam = find(conf.model_type)
    check_max_length(cfg, conf, fam)
    # A method that cannot apply to this family refuses here, from the config alone.
    method.check_supported(AttachContext(task=task, tokenizer=None, family=fam, config=conf), method_cfg)
    tokenizer = load_tokenizer(cfg.model, task, cfg.init)
    torch.manual_seed(cfg.seed)  # head and method initialisation follow the seed (and a random init's weights)
    model, new_names = load_model(cfg.model, task, cfg.head, cfg.init, tokenizer)
    ctx = AttachContext(task=task, tokenizer=tokenizer, family=family(model), config=model.config)
    model, backbone_numel = apply_method(model, method, method_cfg, ctx)
    init_tags = {}
    if cfg.init_from:  # a finished run's weights (its head replaced), e.g. the MNLI warm start
        from bench.warm_start import warm_start

        init_tags = warm_start(model, cfg, model.bench_head_prefixes)
    # Stored with the adapter: what trains, plus anything newly initialised (so reload is exact), also
    # when a method reparameterised it (torch's parametrize renames `w` to `parametrizations.w.original`).
    stored = {n for n, p in model.named_parameters()
              if p.requires_grad or n in new_names or plain_name(n) in new_names}
    return Built(model, tokenizer, method, method_cfg, stored, backbone_numel, init_tags)


def check_max_length(cfg: RunConfig, conf, fam) -> None:
    """max_length within the positions the model (config `conf`, family `fam` or None) has: its family says
    how many (RoBERTa's start after its padding index, DeBERTa-v3's relative positions have no table)."""
    limit = fam.max_length(conf) if fam else getattr(conf, "max_position_embeddings", None)
    if limit is None:
        return
    if cfg.max_length > limit:
        raise BenchError(f"option max_length={cfg.max_length} exceeds the {limit} positions of model {cfg.model}")


def load_data(cfg: RunConfig, task, tokenizer, splits, sources: dict | None = None):
    """Encoded splits; `sources` (if given) receives split -> (where it was read, content digest, rows)."""
    from bench.data import load_examples
    from bench.encoding import cached_encode

    out = {}
    for split in splits:
        ex = load_examples(task, split, cfg.data_dir)
        if split == "train" and cfg.max_train_samples:
            ex.texts, ex.labels = ex.texts[: cfg.max_train_samples], ex.labels[: cfg.max_train_samples]
            ex.fingerprint += f"|first{cfg.max_train_samples}"
        if sources is not None:
            sources[split] = (ex.source, ex.fingerprint, len(ex.labels))
        out[split] = cached_encode(task, split, ex, tokenizer, cfg.max_length, cfg.cache_dir)
    return out


def prepare_data(cfg: RunConfig, task, built: Built, train: bool = True):
    """Tokenised train (optional) and dev splits, ready for the training loop."""
    from bench.encoding import split_rows
    from bench.record import HOLDOUT
    from bench.train import Prepared

    splits = (["train"] if train else []) + list(task.dev_splits) + list(task.test_splits)
    sources: dict = {}
    data = load_data(cfg, task, built.tokenizer, splits, sources)
    dev = {s: data[s] for s in task.dev_splits}
    if train and cfg.select_on == "holdout":
        # A fixed draw (seed 0, whatever the run's seed): every seed and method selects on the same examples,
        # and dev stays untouched for reporting. The holdout is the first "dev" split: it picks the best epoch.
        import numpy as np

        n = len(data["train"]["labels"])
        k = int(np.ceil(cfg.holdout_fraction * n))
        if not 1 <= k < n:
            raise BenchError(f"holdout_fraction={cfg.holdout_fraction} leaves no holdout or no training data "
                             f"from {n} training examples")
        order = np.random.default_rng(0).permutation(n)
        data["train"], held = split_rows(data["train"], np.sort(order[k:])), split_rows(data["train"], np.sort(order[:k]))
        dev = {HOLDOUT: held, **dev}
    return Prepared(task, data.get("train", {}), dev, built.tokenizer.pad_token_id,
                    extra_columns=built.method.batch_columns, test={s: data[s] for s in task.test_splits},
                    sources=sources)


def check_output_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as e:
        raise BenchError(f"output directory {path} is not writable ({e.strerror or e})") from None
    return out


def processes() -> int:
    """Processes of this run: torchrun / accelerate launch set WORLD_SIZE (data-parallel), else 1."""
    import os

    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise BenchError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number of processes") from None


def make_accelerator(precision: str):
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        raise BenchError(f"precision {precision} needs a GPU (this machine has none); use fp32 or auto")
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, cpu=not cuda), precision


def run(cfg: RunConfig, progress: bool = True, parent_run_id: str | None = None, on_eval=None,
        on_start=None, echo=print) -> dict:
    """Train and evaluate one configuration, tracked in MLflow. Everything that bad input can break
    is checked before the MLflow run is created, so bad input leaves nothing behind."""
    from transformers import set_seed

    from bench import record, tracking
    from bench.environment import environment
    from bench.metrics import trivial_baseline
    from bench.params import count_parameters, describe
    from bench.tasks import get_task
    from bench.train import evaluate, train

    quiet_libraries()
    cfg = validate(cfg)  # a RunConfig built by hand is resolved as build_config resolves one
    task = get_task(cfg.task)
    world = processes()
    if cfg.batch_size % world:
        raise BenchError(f"--batch-size {cfg.batch_size} (the global batch) must divide evenly over the {world} "
                         f"processes (e.g. {cfg.batch_size - cfg.batch_size % world or world})")
    out_root = check_output_dir(cfg.output_dir)
    uri = tracking.resolve_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    set_seed(cfg.seed)
    built = build_model(cfg, task)
    prep = prepare_data(cfg, task, built)
    accelerator, precision = make_accelerator(cfg.precision)
    if not accelerator.is_main_process:  # data-parallel: rank 0 alone logs, stores and prints; the others train
        result = train(built.model, prep, cfg, accelerator, built.stored_names, lambda *a: None, progress=False,
                       method=built.method, method_cfg=built.method_config)
        return {"run_id": None, "run_name": cfg.run_name(), "task": task, "cfg": cfg, "result": result}
    counts = count_parameters(built.model, built.backbone_numel, built.stored_names)
    main_split = task.dev_splits[0]  # the trivial baseline is reported on the first dev split
    baseline = trivial_baseline(task, prep.train["labels"], task.task_kind.gold(prep.dev[main_split]))
    echo(f"{cfg.run_name()}: {len(prep.train['labels'])} train examples, "
         + ", ".join(f"{len(d['labels'])} {s}" for s, d in prep.dev.items()) + f"; lr {cfg.lr:g}; {precision}")
    echo(describe(counts))

    tags = record.run_tags(cfg, built.method, built.method_config) | built.init_tags
    experiment = record.experiment_name(task.name, cfg.experiment)
    with tracking.tracked_run(uri, experiment, cfg.run_name(), tags, parent_run_id) as tracker:
        if on_start is not None:  # sweeps record the run id at once: a killed worker's run can be closed
            on_start(tracker.run_id)
        run_dir = out_root / f"{cfg.run_name()}-{tracker.run_id[:8]}"
        config_dict = {**cfg.to_dict(), "tracking_uri": tracking.redact(uri)}
        tracker.log_params(logged_params(config_dict, built.method_config, precision, len(prep.train["labels"])))
        tracker.log_text(yaml.safe_dump(config_dict, sort_keys=False), "config.yaml")
        tracker.set_tags({**environment(), "run_dir": str(run_dir.resolve()), "processes": world})
        record.log_datasets(uri, tracker.run_id, task.name, prep.sources)
        tracker.log_metrics({record.count_metric(k): v for k, v in counts.items()}
                            | {record.baseline_metric(main_split, k): v for k, v in baseline.items()})
        reset_peak_memory()
        t0 = time.perf_counter()
        result = train(built.model, prep, cfg, accelerator, built.stored_names, tracker.log_metrics,
                       on_eval=on_eval, progress=progress, method=built.method, method_cfg=built.method_config)
        wall = time.perf_counter() - t0
        # Labelled test splits (CoNLL-2003): scored once, with the weights of the best dev evaluation.
        tested = evaluate(built.model, prep, cfg.eval_batch_size, accelerator.autocast, prep.test) if prep.test else {}
        after = built.method.counts_after_training(built.model, built.method_config)
        if after:  # e.g. Diff pruning's nonzero diff: logged at the last step, so it is the value runs report
            counts = {**counts, **after}
            tracker.log_metrics({record.count_metric(k): v for k, v in after.items()}, result.steps)
            echo(describe(counts) + " (after training)")
        meta = {"format": 1, "method": cfg.method, "method_options": cfg.method_options, "model": cfg.model,
                "task": task.name, "config": config_dict, "counts": counts,
                "init_chain": built.init_tags.get("init_chain", ""),
                "best_epoch": result.best_epoch, "best_metrics": {**result.best_metrics, **tested}}
        size, where = store_checkpoint(tracker, run_dir, built, meta)
        final = {record.best_metric(s, k): v for s, m in result.best_metrics.items() for k, v in m.items()}
        final |= {record.test_metric(s, k): v for s, m in tested.items() for k, v in m.items()}
        final |= {"best_epoch": result.best_epoch, "wall_seconds": wall, "train_seconds": result.train_seconds,
                  "train_samples_per_s": result.train_samples / max(result.train_seconds, 1e-9),
                  "eval_seconds": result.eval_seconds,
                  "eval_samples_per_s": result.eval_samples / max(result.eval_seconds, 1e-9),
                  "steps": result.steps, "epochs_run": result.epochs_run, "adapter_file_bytes": size,
                  **peak_memory(),
                  **{f"time_{k}_seconds": v for k, v in result.timings.items()}}
        tracker.log_metrics(final, result.steps)
        tracker.set_tags({"stopped": result.stopped, "state": "finished"})
        tracker.flush()
        final["tracking_seconds"] = tracker.seconds
        tracker.log_metrics({"tracking_seconds": tracker.seconds}, result.steps)
        run_id = tracker.run_id
    exp_id = tracking.client(uri).get_run(run_id).info.experiment_id
    summary = {"run_id": run_id, "run_name": cfg.run_name(), "task": task, "cfg": cfg, "counts": counts,
               "url": record.run_url(uri, exp_id, run_id),
               "result": result, "tested": tested, "baseline": baseline, "final": final, "run_dir": run_dir,
               "checkpoint": where,
               "adapter_bytes": size, "tracking_uri": tracking.redact(uri), "experiment": experiment}
    echo(format_summary(summary))
    return summary


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict:
    """Training's peak memory: CUDA memory allocated (peak since reset_peak_memory, the run's own), or on a
    CPU the process's peak RSS (getrusage: since the process started, so in a worker that ran several runs
    it is the largest of them; `bench perf` measures each in a fresh process)."""
    import resource

    import torch

    if torch.cuda.is_available():
        return {"peak_cuda_allocated_bytes": torch.cuda.max_memory_allocated()}
    return {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # Linux: KiB


def logged_params(config: dict, method_config, precision: str, n_train: int) -> dict:
    """The configuration as it takes effect: the method's options once, defaults included (method_config.*,
    not the given method_options.* beside them), the resolved precision, and the epochs the step budget
    allows (max_steps overrides epochs; the epochs asked for are kept as epochs_requested when they differ)."""
    import math

    params = {k: v for k, v in config.items() if k != "method_options"}
    steps_per_epoch = math.ceil(n_train / config["batch_size"])
    steps = config["max_steps"] or math.ceil(config["epochs"] * steps_per_epoch)
    epochs = round(steps / steps_per_epoch, 4)
    if epochs != config["epochs"]:
        params |= {"epochs": epochs, "epochs_requested": config["epochs"]}
    return {**params, "steps_planned": steps, "method_config": dataclasses.asdict(method_config),
            "precision_resolved": precision}


def store_checkpoint(tracker, run_dir: Path, built: Built, meta: dict) -> tuple[int, str]:
    """The adapter checkpoint, stored once: written straight into the run's artifact directory when the
    artifact store is on this machine (run_dir/adapter links to it), else written to a temporary directory,
    uploaded, and the temporary copy removed. Returns (weights bytes, where it is)."""
    from bench import checkpoint

    local = tracker.local_artifact_dir()
    if local is not None:
        target = local / "adapter"
        size = checkpoint.save(target, built.model, built.stored_names, meta)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "adapter").symlink_to(target, target_is_directory=True)
        return size, str(run_dir / "adapter")
    with tempfile.TemporaryDirectory(prefix="bench-adapter-") as tmp:
        size = checkpoint.save(Path(tmp), built.model, built.stored_names, meta)
        tracker.log_artifacts(tmp, "adapter")
    return size, f"{tracker.artifact_uri()}/adapter"


def format_summary(s: dict) -> str:
    task, res, cfg = s["task"], s["result"], s["cfg"]
    lines = [f"\n== {s['run_name']} (MLflow run {s['run_id']}, experiment {s['experiment']}) ==",
             f"best epoch {res.best_epoch} of {res.epochs_run:.2f} run ({res.steps} steps, stopped by {res.stopped};"
             f" best = highest {cfg.select_metric or task.main_metric} on "
             f"{next(iter(res.best_metrics), task.dev_splits[0])}, earliest wins"
             f" ties), seed {cfg.seed}",
             f"{'split':<16}{'metric':<12}{'best epoch':>12}{'majority baseline':>20}"]
    main = task.dev_splits[0]
    for split, metrics in {**res.best_metrics, **s.get("tested", {})}.items():
        for k, v in metrics.items():
            base = s["baseline"].get(k) if split == main else None
            lines.append(f"{split:<16}{k:<12}{v:>12.4f}{'' if base is None else f'{base:>20.4f}'}")
    f, c = s["final"], s["counts"]
    lines.append(f"method params {c['method']:,} of backbone {c['backbone']:,} "
                 f"({100 * c['method'] / c['backbone']:.4f}%), trainable {c['trainable']:,}, "
                 f"adapter file {s['adapter_bytes']:,} bytes")
    lines.append(f"wall {f['wall_seconds']:.1f}s: train {f['train_seconds']:.1f}s "
                 f"({f['train_samples_per_s']:.1f} samples/s), eval {f['eval_seconds']:.1f}s "
                 f"({f['eval_samples_per_s']:.1f} samples/s), tracking {f['tracking_seconds']:.2f}s")
    lines.append(f"adapter checkpoint: {s['checkpoint']}  |  tracking: {s['tracking_uri']}")
    local = not s["tracking_uri"].startswith(("http://", "https://"))
    lines.append(f"MLflow UI: {s['url']}" + ("  (after `bench ui`)" if local else ""))
    return "\n".join(lines)


def load_checkpoint(directory: Path, data_dir: str | None = None):
    """Rebuild the backbone, attach the method, load the adapter. -> (cfg, task, built, meta)."""
    from bench import checkpoint
    from bench.config import build_config
    from bench.tasks import get_task

    quiet_libraries()
    meta = checkpoint.read_meta(directory)
    checkpoint.verify(directory)  # a damaged file is refused before any model loads
    # init_from is not replayed: the stored parameters hold everything the warm start and training changed
    conf = {k: v for k, v in meta["config"].items() if k not in ("tracking_uri", "init_from")}
    if data_dir:
        conf["data_dir"] = data_dir
    cfg = build_config(conf)
    task = get_task(cfg.task)
    built = build_model(cfg, task)
    checkpoint.load_into(built.model, directory)
    return cfg, task, built, meta


def evaluate_checkpoint(directory: Path, data_dir: str | None = None, echo=print) -> dict:
    """Evaluate a checkpoint on every dev split (and labelled test split) and print it beside the logged values."""
    from bench.train import evaluate

    cfg, task, built, meta = load_checkpoint(directory, data_dir)
    prep = prepare_data(cfg, task, built, train=False)
    accelerator, _ = make_accelerator(cfg.precision)
    model = accelerator.prepare(built.model)
    metrics = evaluate(model, prep, cfg.eval_batch_size, accelerator.autocast, {**prep.dev, **prep.test})
    logged = meta.get("best_metrics", {})
    echo(f"{'split':<16}{'metric':<12}{'now':>10}{'logged':>10}")
    for split, m in metrics.items():
        for k, v in m.items():
            old = logged.get(split, {}).get(k)
            echo(f"{split:<16}{k:<12}{v:>10.4f}{'' if old is None else f'{old:>10.4f}'}")
    return {"metrics": metrics, "logged": logged}


def predict_checkpoint(directory: Path, splits: list[str] | None, out_dir: str, data_dir: str | None = None,
                       echo=print) -> list[Path]:
    """Write the GLUE server's prediction files (index, prediction) for unlabelled splits (default: all of the
    task's), one TSV per split, named as the server expects (RTE.tsv, MNLI-m.tsv, MNLI-mm.tsv)."""
    from bench.data import load_unlabelled
    from bench.encoding import cached_encode
    from bench.train import Prepared, predict

    cfg, task, built, _ = load_checkpoint(directory, data_dir)
    if task.predict is None:
        raise BenchError(f"task {task.name} has no unlabelled split to predict (its labelled splits are scored "
                         f"by bench run / bench eval)")
    asked = bool(splits)
    splits = splits or list(task.predict.files)
    examples = {}
    for s in splits:  # every split checked before writing
        try:
            examples[s] = load_unlabelled(task, s, cfg.data_dir)
        except BenchError as e:
            if asked or s not in task.predict.optional:
                raise
            echo(f"{task.predict.submission[s]} not written: {e}")
    accelerator, _ = make_accelerator(cfg.precision)
    model = accelerator.prepare(built.model)
    out = check_output_dir(out_dir)
    written = []
    for split, ex in examples.items():
        data = cached_encode(task, split, ex, built.tokenizer, cfg.max_length, cfg.cache_dir)
        prep = Prepared(task, {}, {}, built.tokenizer.pad_token_id, extra_columns=built.method.batch_columns)
        preds = predict(model, prep, data, cfg.eval_batch_size, accelerator.autocast)
        path = out / task.predict.submission[split]
        tmp = path.with_suffix(".tsv.tmp")  # written whole, then renamed: never a half file under the real name
        tmp.write_text("index\tprediction\n" + "".join(
            f"{i}\t{task.task_kind.format_prediction(task, p)}\n" for i, p in zip(ex.ids, preds, strict=True)))
        tmp.replace(path)
        written.append(path)
        echo(f"{split}: {len(preds)} predictions -> {path}")
    return written


def download_run_checkpoint(run_id: str, tracking_uri: str | None, dst: str | Path) -> Path:
    """The run's adapter artifact, downloaded under `dst`."""
    from bench import tracking

    quiet_libraries()
    uri = tracking.resolve_uri(tracking_uri)
    tracking.check_existing(uri)
    tracking.check_reachable(uri)
    c = tracking.client(uri)
    try:
        c.get_run(run_id)
    except Exception:
        raise BenchError(f"no MLflow run {run_id!r} in {tracking.redact(uri)}") from None
    try:
        Path(dst).mkdir(parents=True, exist_ok=True)
        return Path(c.download_artifacts(run_id, "adapter", str(dst)))
    except Exception as e:
        raise BenchError(f"run {run_id} has no adapter artifact ({type(e).__name__})") from None


@contextlib.contextmanager
def checkpoint_dir(run_id: str | None, directory: str | None, tracking_uri: str | None):
    """The adapter directory of --run (downloaded into a temporary directory removed afterwards) or
    --checkpoint."""
    if bool(run_id) == bool(directory):
        raise BenchError("needs exactly one of --run RUN_ID or --checkpoint DIR")
    if directory:
        yield Path(directory)
        return
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        yield download_run_checkpoint(run_id, tracking_uri, tmp)



