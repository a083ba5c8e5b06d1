"""A run's configuration: the frozen RunConfig, its fields and how option values are read. Light on purpose
(the CLI's parsers import it); bench/resolve.py builds and validates one from option layers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from bench import yamlio
from bench.errors import BenchError, first_line
from bench.record import run_name
from bench.values import typed


@dataclass(frozen=True)
class RunConfig:
    method: str = "full"
    model: str = "minilm"
    task: str = "rte"
    data_dir: str | None = None  # None: the Hugging Face hub
    seed: int = 42
    epochs: float = 3.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    lr: float | None = None  # None: the method's default (see `bench methods`), filled in by build_config
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 128
    warmup_ratio: float = 0.06
    lr_schedule: str = "linear"  # linear (warmup, then linear decay to 0) | constant (warmup, then flat)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0: no clipping
    adam_eps: float = 1e-8  # torch's AdamW default; transformers' old AdamW (PASTA, BitFit code): 1e-6
    adam_beta2: float = 0.999  # fairseq's RoBERTa recipe: 0.98
    # length (length-grouped: little padding, faster) | uniform (a plain shuffle) | buffer100 (BERT's TF
    # shuffle buffer of 100 over the file order)
    batch_order: str = "length"
    patience: int | None = None  # epochs without improvement before stopping; None: never
    max_train_samples: int | None = None  # keep only the first N training examples (budgets)
    init: str = (
        "pretrained"  # pretrained | random (the architecture with fresh weights: speed and memory studies)
    )
    # a finished run to start from, its head replaced: an MLflow run id, an adapter dir, or task:<name>
    # (bench/warm_start.py)
    init_from: str | None = None
    head: str = (
        "family"  # family (the family's HF head) | linear (one linear layer on the first token's state)
    )
    select_on: str = "dev"  # the split that picks the best epoch: dev (as the papers do) | holdout
    select_metric: str | None = (
        None  # the metric that picks it; None: the task's main metric (GLUE: mean score)
    )
    holdout_fraction: float = 0.1  # select_on=holdout: this share of train (fixed draw) held out to select on
    eval_every_steps: int | None = None  # also evaluate every N steps; None: once per epoch
    log_every: int = 20  # log loss and lr every N optimizer steps (more often on runs under 10 N steps)
    precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp32) | fp32 | bf16 | fp16
    compile: bool = False  # torch.compile the model (a GPU speed-up; the first steps pay for compilation)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, slower steps
    # CPU: float32 values below 1.2e-38 (denormals) computed as 0 (bench.device.flush_denormals: why)
    flush_denormal: bool = True
    # CPU dropout masks: fast (16-bit lanes of torch's generator, p rounded to 1/65536) | torch (torch's
    # bernoulli draws: the masks nn.Dropout gives for a seed); bench/lean.py says why. A GPU draws torch's.
    dropout_draws: str = "fast"
    # the last layer's tokens: head (only those a sequence head reads, where the family knows them: the first;
    # bench/needed_tokens.py) | all (every token, transformers' code)
    last_layer_tokens: str = "head"
    # padding positions: skip (each layer computes the real tokens only, where the family's layers allow it;
    # bench/needed_tokens.py) | compute (the padded grid, transformers' code)
    padding_tokens: str = "skip"
    output_dir: str = "runs"
    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str | None = None  # None: one experiment per task, named bench-<task>
    cache_dir: str | None = None  # tokenisation cache; None: $BENCH_CACHE or ~/.cache/bench
    method_options: dict = field(default_factory=dict)  # the method's own knobs (`bench methods`)
    tags: dict = field(default_factory=dict)  # extra MLflow tags (sweeps add study, trial, phase)

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_name(self) -> str:
        return run_name(self.method, self.model, self.task, self.seed, self.tags)

    def config_hash(self) -> str:
        """Identifies the training configuration (seed and bookkeeping excluded)."""
        skip = {*NOT_TRAINING, "seed", "tags", "data_dir"}
        body = {k: v for k, v in self.to_dict().items() if k not in skip}
        for (
            key,
            old_behaviour,
        ) in ADDED_FIELDS.items():  # options added later hash as before at their old behaviour
            if body.get(key) == old_behaviour:
                body.pop(key)
        return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


FIELDS = {f.name: f for f in fields(RunConfig)}
# Fields that say where a run is kept or how fast it trains, never what it trains: left out of the config
# hash and of a sweep's identity, and never searched.
NOT_TRAINING = (
    "output_dir",
    "tracking_uri",
    "experiment",
    "cache_dir",
    "compile",
    "gradient_checkpointing",
    "flush_denormal",
)
# Fields added after runs existed, with the value that reproduces the earlier behaviour: left out of the
# config hash at that value, so existing runs are still found (and reused) by sweeps and grids.
ADDED_FIELDS = {
    "init": "pretrained",
    "head": "family",
    "lr_schedule": "linear",
    "select_on": "dev",
    "holdout_fraction": 0.1,
    "adam_eps": 1e-8,
    "adam_beta2": 0.999,
    "batch_order": "length",
    "select_metric": None,
    "init_from": None,
    "dropout_draws": "torch",
    "last_layer_tokens": "all",
    "padding_tokens": "compute",
}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INITS = ("pretrained", "random")  # what each means: the comment at bench.models.ARCH_DIR
LR_SCHEDULES = ("linear", "constant")
SELECT_ON = ("dev", "holdout")
BATCH_ORDERS = ("length", "uniform", "buffer100")
DROPOUT_DRAWS = ("fast", "torch")  # bench.lean.MaskDraws draws each
LAST_LAYER_TOKENS = ("head", "all")
PADDING_TOKENS = ("skip", "compute")


def parse_value(text: str):
    """`--set` values are YAML scalars: 3e-4, true, null, [1, 2] all mean what they look like."""
    try:
        return yamlio.load(text)
    except yaml.YAMLError:
        return text


def parse_set(items: list[str]) -> dict:
    """['lr=1e-4', 'method.r=16'] -> {'lr': 1e-4, 'method_options': {'r': 16}}."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"malformed --set {item!r}: expected key=value (e.g. lr=3e-4 or method.r=16)")
        key = key.strip()
        if key.startswith("method."):
            out.setdefault("method_options", {})[key[len("method.") :]] = parse_value(value)
        else:
            out[key] = parse_value(value)
    return out


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML file holding a mapping (run configs, search spaces), or a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"{what} not found: {path}")
    try:
        data = yamlio.load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise BenchError(f"{what} {path} is not valid YAML: {first_line(e)}") from None
    if not isinstance(data, dict):
        raise BenchError(f"{what} {path} must hold a mapping of options, got {type(data).__name__}")
    return data


def coerce(name: str, value):
    if name in ("method_options", "tags"):
        if not isinstance(value or {}, dict):
            raise BenchError(f"{name} must be a mapping, got {value!r}")
        return value if value is not None else {}
    return typed(name, value, str(FIELDS[name].type))
