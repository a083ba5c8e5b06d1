"""`init_from`: start a run from a finished run's weights, its head replaced for the new task: the MNLI warm
start behind the published RoBERTa-large LoRA (and full FT) rows for MRPC, RTE and STS-B. The source is an
MLflow run id, an adapter directory, or `task:<name>` (the best finished run of the same method, model and
method options on that task in the run's tracking store). The chain is recorded in the run's tags."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from bench import checkpoint, record, tracking
from bench.checkpoint import download_run_checkpoint
from bench.errors import BenchError, first_line
from bench.tasks import get_task

TASK_PREFIX = "task:"


def find_task_run(task_name: str, cfg) -> str:
    """The finished run of cfg's method, model and method options on `task_name` with the highest main
    metric (on its first dev split), in cfg's tracking store."""
    task = get_task(task_name)
    uri = cfg.tracking_uri
    client = tracking.client(uri)
    experiment = client.get_experiment_by_name(record.experiment_name(task.name))
    runs = (
        []
        if experiment is None
        else client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.method = '{cfg.method}' and tags.model = '{cfg.model}' and "
            f"attributes.status = 'FINISHED'",
        )
    )
    metric = record.best_metric(task.dev_splits[0], task.main_metric)
    options = {f"method_config.{k}": str(v) for k, v in cfg.method_options.items()}
    runs = [
        r
        for r in runs
        if metric in r.data.metrics and all(r.data.params.get(k) == v for k, v in options.items())
    ]
    if not runs:
        raise BenchError(
            f"init_from {TASK_PREFIX}{task.name}: no finished {cfg.method} run of {cfg.model} on "
            f"{task.name} in {tracking.redact(uri)}; train it first (bench run --method {cfg.method} "
            f"--model {cfg.model} --task {task.name}) or set init_from=null"
        )
    return max(runs, key=lambda r: r.data.metrics[metric]).info.run_id


def warm_start(model, cfg, head: tuple[str, ...]) -> dict:
    """Copy every stored parameter of the source into `model` except its task head (`head` prefixes), after
    checking the source trained the same method on the same model with the same options. Returns the tags
    that record the chain."""
    spec = cfg.init_from
    with tempfile.TemporaryDirectory(prefix="bench-init-") as tmp:
        if Path(spec).is_dir():
            directory, source = Path(spec), str(Path(spec).resolve())
        else:
            source = find_task_run(spec[len(TASK_PREFIX) :], cfg) if spec.startswith(TASK_PREFIX) else spec
            directory = download_run_checkpoint(source, cfg.tracking_uri, tmp)
        meta = checkpoint.read_meta(directory)
        weights = checkpoint.verify(directory)
        theirs = meta["config"]
        mine = {"method": cfg.method, "model": cfg.model, "method_options": cfg.method_options}
        for key, value in mine.items():
            if theirs.get(key, {} if key == "method_options" else None) != value:
                raise BenchError(
                    f"init_from {spec}: the source trained {key} {theirs.get(key)!r}, this run "
                    f"{value!r}: a warm start needs the same method, model and method options"
                )

        try:
            state = load_file(str(weights))
        except Exception as e:  # noqa: BLE001 - not safetensors
            raise BenchError(f"init_from {spec}: {weights} is not readable ({first_line(e)})") from None
    params = dict(model.named_parameters())
    body = {n: t for n, t in state.items() if not n.startswith(head)}  # the new task gets a new head
    for name, tensor in body.items():
        if name not in params or params[name].shape != tensor.shape:
            raise BenchError(f"init_from {spec}: {name} does not fit this model")
    with torch.no_grad():
        for name, tensor in body.items():
            params[name].copy_(tensor)
    chain = meta.get("init_chain") or ""
    return {
        "init_from": source,
        "init_from_task": meta["task"],
        "init_chain": f"{chain} > {meta['task']}:{source}" if chain else f"{meta['task']}:{source}",
        "init_from_params": str(sum(t.numel() for t in body.values())),
    }
