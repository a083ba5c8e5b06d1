"""`bench eval` and `bench predict`: a stored checkpoint rebuilt, then scored or written as predictions."""

from __future__ import annotations

from pathlib import Path

from bench import checkpoint
from bench.build import build_model, prepare_data
from bench.data import load_unlabelled
from bench.device import make_accelerator
from bench.encoding import cached_encode
from bench.errors import BenchError
from bench.logs import quiet_libraries
from bench.resolve import build_config
from bench.runner import check_output_dir
from bench.tasks import get_task
from bench.train import Prepared, evaluate, predict


def load_checkpoint(directory: Path, data_dir: str | None = None):
    """Rebuild the backbone, attach the method, load the adapter. -> (cfg, task, built, meta)."""
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
    """Evaluate a checkpoint on every dev split (and labelled test split) and print it beside the logged
    values."""
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


def predict_checkpoint(
    directory: Path, splits: list[str] | None, out_dir: str, data_dir: str | None = None, echo=print
) -> list[Path]:
    """Write the GLUE server's prediction files (index, prediction) for unlabelled splits (default: all of the
    task's), one TSV per split, named as the server expects (RTE.tsv, MNLI-m.tsv, MNLI-mm.tsv)."""
    cfg, task, built, _ = load_checkpoint(directory, data_dir)
    if task.predict is None:
        raise BenchError(
            f"task {task.name} has no unlabelled split to predict (its labelled splits are scored "
            f"by bench run / bench eval)"
        )
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
        tmp = path.with_suffix(
            ".tsv.tmp"
        )  # written whole, then renamed: never a half file under the real name
        tmp.write_text(
            "index\tprediction\n"
            + "".join(
                f"{i}\t{task.task_kind.format_prediction(task, p)}\n"
                for i, p in zip(ex.ids, preds, strict=True)
            )
        )
        tmp.replace(path)
        written.append(path)
        echo(f"{split}: {len(preds)} predictions -> {path}")
    return written
