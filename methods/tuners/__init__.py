"""peft's tuners as bench methods, from data.

`tuners.yaml` (beside this file) holds one entry per tuner: its peft type, the projection roles it targets
(each family maps them to its modules), the defaults bench runs it at, its size knob and its default lr.
Each entry becomes a registered Method whose options are typed from peft's own config class, so a tuner is
a few lines of YAML and no code; the few that need a hook in the training loop (AdaLoRA) get it from
methods/tuners/hooks.py through the method interface.

The tuner is attached with peft's tuner class itself (not `get_peft_model`): the model keeps its transformers
class and parameter names, so bench trains and counts the task head once (peft's `modules_to_save` would
keep the original head and a trainable copy), and tuners that share state across layers (VeRA, VBLoRA, ...)
are allowed, which `inject_adapter_in_model` refuses.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import yamlio
from bench.errors import BenchError, first_line
from methods import register
from methods.base import Method
from methods.tuners.hooks import HOOKS

TABLE = Path(__file__).with_name("tuners.yaml")
# peft config fields that are not tuner options: bench sets them (targets, the head, the task), or they
# describe a saved adapter rather than how it trains.
NOT_OPTIONS = {
    "peft_type",
    "task_type",
    "inference_mode",
    "revision",
    "base_model_name_or_path",
    "auto_mapping",
    "peft_version",
    "target_modules",
    "exclude_modules",
    "feedforward_modules",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
    "fan_in_fan_out",
    "megatron_core",
    "runtime_offload_base_weight",
    "progressbar",
    "total_step",  # AdaLoRA: the training loop's step count (methods/tuners/hooks.py)
}
ENTRY_KEYS = {
    "peft_type",
    "display_name",
    "summary",
    "source",
    "targets",
    "defaults",
    "knob",
    "knob_label",
    "knob_values",
    "default_lr",
    "probe",
    "hooks",
}


@dataclass(frozen=True)
class TunerSpec:
    """One entry of tuners.yaml."""

    name: str
    peft_type: str
    display_name: str
    summary: str
    source: str  # where the defaults come from
    targets: dict  # peft field -> comma-separated projection roles or module names
    defaults: dict = field(default_factory=dict)  # bench's defaults, over peft's
    knob: str | None = None
    knob_label: str = ""
    knob_values: tuple = ()
    default_lr: float = 5e-4
    probe: dict = field(default_factory=dict)  # smaller sizes for the tiny models of `bench methods --matrix`
    hooks: str | None = None


def load_specs(path: Path = TABLE) -> list[TunerSpec]:
    data = yamlio.load(path.read_text())
    specs = []
    for name, entry in data.items():
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise BenchError(f"tuner {name} in {path}: unknown key {sorted(unknown)[0]!r}")
        entry = dict(entry)
        entry["knob_values"] = tuple(entry.get("knob_values", ()))
        specs.append(TunerSpec(name=name, **entry))
    return specs


# --- options typed from peft's config class ---
def option_type(hint) -> tuple[str, tuple] | None:
    """A peft field's annotation as the kind bench.values.typed reads ("int", "float | None", ...) and its
    allowed values (a Literal's); None for what --set cannot express (lists, dicts, mixed unions)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        literals = [a for a in rest if typing.get_origin(a) is typing.Literal]
        if len(rest) == 2 and str in rest and literals:  # str | Literal[...] (RoAd's variant): the Literal
            rest = literals
        if len(rest) != 1:
            return None
        hint = rest[0]
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        if not all(isinstance(c, str) for c in choices):
            return None
        return ("str | None" if optional else "str"), choices
    for kind in (bool, int, float, str):
        if hint is kind:
            return kind.__name__ + (" | None" if optional else ""), ()
    return None


@functools.cache
def peft_config_class(peft_type: str):
    # lazy: peft takes seconds to import, and every command that lists methods loads this module
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils import PeftType

    return PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[peft_type]]


@functools.cache
def options_class(name: str) -> type:
    """A frozen dataclass of the tuner's options: every scalar field of peft's config class (its default,
    or bench's from tuners.yaml) plus the targets as roles; building one builds peft's config, so peft's
    own checks refuse bad values."""
    spec = SPECS[name]
    peft_cls = peft_config_class(spec.peft_type)
    hints = typing.get_type_hints(peft_cls)
    fields, choices = [], {}
    for f in dataclasses.fields(peft_cls):
        typed = option_type(hints.get(f.name)) if f.name not in NOT_OPTIONS else None
        if typed is None or not f.init:
            continue
        default = spec.defaults.get(f.name, f.default)  # a field with a factory default (dict, list): skipped
        if default is dataclasses.MISSING:
            continue
        fields.append((f.name, typed[0], field(default=default)))
        if typed[1]:
            choices[f.name] = typed[1]
    unknown = set(spec.defaults) - {f[0] for f in fields}
    if unknown:
        raise BenchError(
            f"tuner {spec.name}: default for {sorted(unknown)[0]!r}, not an option of {peft_cls.__name__}"
        )
    fields += [(k, "str", field(default=v)) for k, v in spec.targets.items()]

    def __post_init__(self):
        for key, allowed in choices.items():
            value = getattr(self, key)
            if value is not None and value not in allowed:
                raise ValueError(f"{key} {value!r} is not one of {', '.join(map(str, allowed))}")
        if "target_modules" in spec.targets and not role_list(self.target_modules):
            raise ValueError(f"target_modules {self.target_modules!r} names no module")
        peft_config(spec, self, {k: ["placeholder"] for k in spec.targets})  # peft's own checks

    cls = dataclasses.make_dataclass(
        f"{spec.name.title().replace('_', '')}Options",
        fields,
        frozen=True,
        namespace={"__post_init__": __post_init__},
    )
    return cls


def role_list(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def peft_config(spec: TunerSpec, cfg, targets: dict, **extra):
    """peft's config for the tuner: the options, the resolved targets, and `extra` (AdaLoRA's total_step)."""
    options = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in spec.targets}
    if spec.hooks == "adalora":  # the loop sets the real step count (hooks.py); until then one that fits
        extra = {"total_step": options.get("tinit", 0) + options.get("tfinal", 0) + 1} | extra
    cls = peft_config_class(spec.peft_type)
    if "progressbar" in {f.name for f in dataclasses.fields(cls)}:  # no bar on bench's console
        extra["progressbar"] = False
    try:
        return cls(**options, **targets, **extra)
    except (TypeError, ValueError) as e:
        raise ValueError(first_line(e)) from None


# --- targets from the family ---
def target_names(model, family, roles: list[str]) -> list[str]:
    """The full names of the modules a list of roles means in this model: each role's module (a projection
    or a norm of the family) in every encoder layer, or, for a name that is not a role, every module inside
    the layers whose name ends with it. Modules without parameters are left out (ModernBERT's layer-0
    attention norm is an Identity)."""
    layers = family.layers(model)
    prefix = next(n for n, m in model.named_modules() if m is layers)
    paths = []
    for role in roles:
        path = family.projection(role) or family.norms.get(role)
        paths.append(re.escape(path) if path else rf"(?:.*\.)?{re.escape(role)}")
    pattern = re.compile(rf"{re.escape(prefix)}\.\d+\.(?:{'|'.join(paths)})")
    return [
        n
        for n, m in model.named_modules()
        if pattern.fullmatch(n) and any(True for _ in m.parameters(recurse=False))
    ]


class PeftTuner(Method):
    """A peft tuner attached to the encoder's layers; what it is comes from its TunerSpec."""

    spec: TunerSpec
    in_default_lists = False  # `bench intrinsic` and `bench perf` list the hand-written methods by default
    peft_tuner = True
    stores_buffers = True

    @property
    def config_cls(self):  # built on first use: it imports peft
        return options_class(self.spec.name)

    def unsupported(self, ctx, cfg):
        roles = self.roles(ctx.family)
        for key in self.spec.targets:
            for role in role_list(getattr(cfg, key)):
                if role not in roles and re.fullmatch(r"[\w.]+", role) is None:
                    return f"{key}: {role!r} is neither a role nor a module name"
        return None

    def attach(self, model, cfg, ctx):
        # lazy: peft takes seconds to import, and every command that lists methods loads this module
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
        from peft.utils import PeftType

        config = self.peft_config_for(model, cfg, ctx.family)
        try:
            with warnings.catch_warnings():  # peft asks a LayerNorm for in/out features (LN tuning): harmless
                warnings.filterwarnings("ignore", message="Unsupported layer type")
                tuner = PEFT_TYPE_TO_TUNER_MAPPING[PeftType[self.spec.peft_type]](
                    model, config, adapter_name="default"
                )
        except (ValueError, TypeError, RuntimeError, NotImplementedError, StopIteration) as e:
            raise BenchError(f"{self.name}: peft cannot attach it to this model ({first_line(e)})") from None
        model = tuner.model
        # Kept outside the module tree (a plain attribute would register the tuner as a submodule: a cycle);
        # hooks reach the tuner (AdaLoRA's rank allocator) through it.
        model.__dict__["bench_peft_tuner"] = tuner
        return model

    def peft_config_for(self, model, cfg, family):
        """peft's config for this model: the options, and the targets resolved to the model's module names."""
        targets = {}
        for key in self.spec.targets:
            names = target_names(model, family, role_list(getattr(cfg, key)))
            if not names and key == "target_modules":
                raise BenchError(
                    f"{self.name}: {key}={getattr(cfg, key)!r} matches no module with parameters in "
                    f"{family.name}'s layers (roles: {', '.join(self.roles(family))})"
                )
            targets[key] = names
        try:
            return peft_config(self.spec, cfg, targets)
        except ValueError as e:
            raise BenchError(f"{self.name}: peft cannot attach it to this model ({e})") from None

    @staticmethod
    def roles(family) -> list[str]:
        return sorted({*family.projections, *family.fused, *family.norms})

    def probe_options(self) -> dict:
        return dict(self.spec.probe)

    def search_space(self) -> dict:
        """lr on a log range from a tenth to ten times its default, and the size knob over its values."""
        space = {
            "lr": {"type": "float", "low": self.default_lr / 10, "high": self.default_lr * 10, "log": True}
        }
        if self.knob:
            space[f"method.{self.knob}"] = {"type": "categorical", "choices": list(self.knob_values)}
        return space


def make_method(spec: TunerSpec) -> type:
    attrs: dict[str, Any] = {
        "name": spec.name,
        "display_name": spec.display_name,
        "summary": spec.summary,
        "spec": spec,
        "knob": spec.knob,
        "knob_label": spec.knob_label or (spec.knob or ""),
        "knob_values": spec.knob_values,
        "default_lr": float(spec.default_lr),
        "__module__": __name__,
    }
    bases = (HOOKS[spec.hooks], PeftTuner) if spec.hooks else (PeftTuner,)
    return type(f"Tuner_{spec.name}", bases, attrs)


SPECS = {spec.name: spec for spec in load_specs()}
for _spec in SPECS.values():
    register(make_method(_spec))
