"""The one place a run's configuration is resolved: option layers (defaults < preset < YAML file < --set <
flags) merged, typed, validated and completed (the method's default lr) into a RunConfig before anything
runs. Runs, dry runs, sweeps, intrinsic grids, perf and checkpoint reloads all build theirs here."""

from __future__ import annotations

import math
from dataclasses import fields

from bench.config import (
    BATCH_ORDERS,
    DROPOUT_DRAWS,
    FIELDS,
    INITS,
    LAST_LAYER_TOKENS,
    LR_SCHEDULES,
    PADDING_TOKENS,
    PRECISIONS,
    SELECT_ON,
    RunConfig,
    coerce,
)
from bench.errors import BenchError, choices_error
from bench.record import check_experiment
from bench.task_heads import HEADS
from bench.tasks import get_task
from bench.tracking import resolve_uri
from methods import get_method


def build_config(*layers: dict) -> RunConfig:
    """Merge option layers (later wins; method_options merge key by key) and validate."""
    merged: dict = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in FIELDS:
                raise choices_error("option", key, FIELDS)
            if key in ("method_options", "tags") and isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    cfg = RunConfig(**{k: coerce(k, v) for k, v in merged.items()})
    return validate(cfg)


def validate(cfg: RunConfig) -> RunConfig:
    task = get_task(cfg.task)
    method = get_method(cfg.method)
    method.make_config(cfg.method_options)  # unknown or ill-typed method options fail here
    if cfg.precision not in PRECISIONS:
        raise choices_error("precision", cfg.precision, PRECISIONS)
    if cfg.init not in INITS:
        raise choices_error("init", cfg.init, INITS)
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise choices_error("lr_schedule", cfg.lr_schedule, LR_SCHEDULES)

    if cfg.head not in HEADS:
        raise choices_error("head", cfg.head, HEADS)
    if cfg.select_on not in SELECT_ON:
        raise choices_error("select_on", cfg.select_on, SELECT_ON)
    if cfg.batch_order not in BATCH_ORDERS:
        raise choices_error("batch_order", cfg.batch_order, BATCH_ORDERS)
    if cfg.dropout_draws not in DROPOUT_DRAWS:
        raise choices_error("dropout_draws", cfg.dropout_draws, DROPOUT_DRAWS)
    if cfg.last_layer_tokens not in LAST_LAYER_TOKENS:
        raise choices_error("last_layer_tokens", cfg.last_layer_tokens, LAST_LAYER_TOKENS)
    if cfg.padding_tokens not in PADDING_TOKENS:
        raise choices_error("padding_tokens", cfg.padding_tokens, PADDING_TOKENS)
    if cfg.select_metric is not None and cfg.select_metric not in task.metrics:
        raise choices_error(f"select_metric for task {task.name}:", cfg.select_metric, task.metrics)
    if not 0 < cfg.adam_eps < 1 or not 0 < cfg.adam_beta2 < 1:
        raise BenchError(f"options adam_eps={cfg.adam_eps} and adam_beta2={cfg.adam_beta2} must be in (0, 1)")
    for f in fields(RunConfig):  # every number finite: nan and inf are never meant
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise BenchError(f"option {f.name}={value} must be a finite number")
    if not 0 < cfg.holdout_fraction <= 0.5:
        raise BenchError(f"option holdout_fraction={cfg.holdout_fraction} must be in (0, 0.5]")
    if not 0 <= cfg.warmup_ratio <= 1:
        raise BenchError(f"option warmup_ratio={cfg.warmup_ratio} must be in [0, 1]")
    for name in ("weight_decay", "max_grad_norm"):
        if getattr(cfg, name) < 0:
            raise BenchError(f"option {name}={getattr(cfg, name)} must be at least 0")
    if cfg.experiment is not None:
        check_experiment(cfg.experiment)
    if not 0 <= cfg.seed < 2**32:
        raise BenchError(f"option seed={cfg.seed} must be in [0, 2**32)")
    for name in ("batch_size", "eval_batch_size", "max_length", "log_every"):
        if getattr(cfg, name) < 1:
            raise BenchError(f"option {name}={getattr(cfg, name)} must be at least 1")
    if cfg.epochs <= 0 and not cfg.max_steps:
        raise BenchError(f"option epochs={cfg.epochs} must be positive (or set max_steps)")
    for name in ("max_steps", "patience", "max_train_samples", "eval_every_steps"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise BenchError(f"option {name}={getattr(cfg, name)} must be at least 1")
    if cfg.lr is not None and cfg.lr <= 0:
        raise BenchError(f"option lr={cfg.lr} must be positive")
    # resolved here, before anything runs, so that a configuration hashes the same wherever it is built
    return cfg.replace(
        task=task.name,
        lr=method.default_lr if cfg.lr is None else cfg.lr,
        tracking_uri=resolve_uri(cfg.tracking_uri),
    )
