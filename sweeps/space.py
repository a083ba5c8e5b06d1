"""Search spaces are data: one YAML file per method (sweeps/spaces/<method>.yaml) mapping a RunConfig
option or `method.<option>` to a distribution."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.config import FIELDS, NOT_TRAINING, load_yaml
from bench.errors import BenchError
from bench.param_table import meta_counts
from bench.plugins import files
from bench.resolve import build_config
from bench.tasks import get_task
from methods import get_method

SPACES_DIR = Path(__file__).parent / "spaces"
TYPES = ("float", "int", "categorical")
# what a trial is of (and its seed) is fixed by the study; NOT_TRAINING changes nothing worth searching
NOT_SEARCHABLE = {"method", "model", "task", "seed", "data_dir", "method_options", "tags", *NOT_TRAINING}


def default_space_file(method: str) -> Path | None:
    """sweeps/spaces/<method>.yaml, else a plugin directory's spaces/<method>.yaml, else None."""
    found = files(SPACES_DIR, "spaces", f"{method}.yaml")
    return found[0] if found else None


def method_space(method: str, space_file: str | Path | None = None) -> dict:
    """The space a sweep searches: --space FILE, else the method's YAML file, else the one the method
    derives from what it is (a peft tuner: lr on a log range around its default, and its size knob)."""
    path = space_file or default_space_file(method)
    if path is not None:
        return load_space(path, method)
    space = get_method(method).search_space()
    if not space:
        raise BenchError(
            f"no search space for method {method}: add sweeps/spaces/{method}.yaml (or spaces/"
            f"{method}.yaml in a plugin directory), or pass --space FILE"
        )
    validate_space(space, method, f"the search space of method {method}")
    return space


def load_space(path: str | Path, method: str) -> dict:
    space = load_yaml(path, "search space file")
    validate_space(space, method, str(path))
    return space


def validate_space(space: dict, method: str, where: str = "search space") -> None:
    option_names = set(get_method(method).defaults())
    for key, spec in space.items():
        if key.startswith("method."):
            if key[len("method.") :] not in option_names:
                raise BenchError(
                    f"{where}: bad key {key!r}: method {method} has no option "
                    f"{key[len('method.') :]!r} (choices: {', '.join(sorted(option_names))})"
                )
        elif key not in FIELDS or key in NOT_SEARCHABLE:
            raise BenchError(
                f"{where}: bad key {key!r} (choices: "
                f"{', '.join(sorted(set(FIELDS) - NOT_SEARCHABLE))}, method.<option>)"
            )
        if not isinstance(spec, dict) or spec.get("type") not in TYPES:
            raise BenchError(f"{where}: bad key {key!r}: needs a mapping with type one of {', '.join(TYPES)}")
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise BenchError(f"{where}: bad key {key!r}: categorical needs a non-empty list `choices`")
        else:
            low, high = spec.get("low"), spec.get("high")
            if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or not low < high:
                raise BenchError(f"{where}: bad key {key!r}: needs numbers low < high, got {low!r}, {high!r}")
            if spec.get("log") and low <= 0:
                raise BenchError(f"{where}: bad key {key!r}: a log scale needs low > 0")
        _check_values(key, spec, method, where)


def extremes(spec: dict) -> list:
    """The values that stand for everything a space entry can draw: its choices, or both ends of its range
    (the rules checked against them are monotone in each option)."""
    if spec["type"] == "categorical":
        return spec["choices"]
    if spec["type"] == "int":
        return [int(spec["low"]), int(spec["high"])]
    return [spec["low"], spec["high"]]


def _check_values(key: str, spec: dict, method: str, where: str) -> None:
    """Every value the space can draw is a valid option, checked before any study exists."""
    for value in extremes(spec):
        layer: dict = {}
        put(layer, key, value)
        try:
            build_config({"method": method}, layer)
        except BenchError as e:
            raise BenchError(f"{where}: bad key {key!r}: value {value!r} is not valid ({e})") from None


def check_attachable(space: dict, cfg) -> None:
    """Every value the space can draw for a method option attaches the method to cfg's model (on the meta
    device, from the architecture alone): a choice the model cannot take (a block size that does not divide
    its width) is one line before the study exists, not a run of failed trials."""
    task = get_task(cfg.task)
    for key, spec in space.items():
        if not key.startswith("method."):
            continue
        option = key[len("method.") :]
        for value in extremes(spec):
            try:
                meta_counts(cfg.model, task, cfg.method, {**cfg.method_options, option: value}, cfg.head)
            except BenchError as e:
                raise BenchError(
                    f"search space: {key}={value!r} does not fit model {cfg.model}: {e}"
                ) from None


def centre(space: dict, values: dict) -> tuple[dict, dict]:
    """Centre a search space on preset values: a log-scale range becomes value/3..value*3, a linear one
    value/2..value*1.5, a categorical one gains the value; preset values for keys the space does not search
    are returned as fixed options. -> (space, fixed layer)."""
    flat = {k: v for k, v in values.items() if k != "method_options"}
    flat |= {f"method.{k}": v for k, v in values.get("method_options", {}).items()}
    out, fixed = {}, {}
    for key, spec in space.items():
        if key not in flat:
            out[key] = spec
            continue
        v, spec = flat[key], dict(spec)
        if spec["type"] == "categorical":
            spec["choices"] = list(spec["choices"]) + ([v] if v not in spec["choices"] else [])
        elif isinstance(v, (int, float)) and v > 0:
            low, high = (v / 3, v * 3) if spec.get("log") else (v / 2, v * 1.5)
            if spec["type"] == "int":
                low, high = max(1, int(low)), max(int(round(high)), int(low) + 1)
            spec["low"], spec["high"] = low, high
        out[key] = spec
    for key, v in flat.items():
        if key not in space:
            put(fixed, key, v)
    return out, fixed


def space_hash(space: dict) -> str:
    return hashlib.sha1(json.dumps(space, sort_keys=True).encode()).hexdigest()[:8]


def sample(trial, space: dict) -> dict:
    """Draw one configuration from an Optuna trial: {'lr': .., 'method_options': {'r': ..}}."""
    out: dict = {}
    for key, spec in space.items():
        if spec["type"] == "float":
            value = trial.suggest_float(key, spec["low"], spec["high"], log=bool(spec.get("log")))
        elif spec["type"] == "int":
            value = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        else:
            value = trial.suggest_categorical(key, spec["choices"])
        put(out, key, value)
    return out


def put(layer: dict, key: str, value) -> None:
    if key.startswith("method."):
        layer.setdefault("method_options", {})[key[len("method.") :]] = value
    else:
        layer[key] = value
