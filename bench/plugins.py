"""Where bench finds what it can be extended with: its own folders first, then every directory named
in $BENCH_PLUGINS (os.pathsep-separated). A plugin directory may hold methods/*.py (method modules),
families/*.py (encoder families), spaces/*.yaml (search spaces) and tasks/*.yaml (task entries); nothing
else needs editing."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

import yaml

from bench import yamlio
from bench.errors import BenchError

ENV = "BENCH_PLUGINS"


def plugin_dirs() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def files(builtin: Path, sub: str, pattern: str) -> list[Path]:
    """The built-in folder's matches (sorted), then each plugin directory's `sub` folder's."""
    found = sorted(builtin.glob(pattern))
    for d in plugin_dirs():
        found += sorted((d / sub).glob(pattern))
    return found


def load_registry(builtin: Path, sub: str, kind: str, parse) -> list:
    """Every YAML file of a registry folder (built-in, then plugins) as `parse(data, path)` gives it; a file
    that cannot be read or parsed is one line naming it (tasks, presets and report layouts load this way)."""
    out = []
    for path in files(builtin, sub, "*.yaml"):
        try:
            data = yamlio.load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise BenchError(f"{kind} file {path} is not readable YAML ({type(e).__name__})") from None
        try:
            parsed = parse(data, path)
        except BenchError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise BenchError(
                f"{kind} file {path} is malformed (missing or bad {type(e).__name__}: {e})"
            ) from None
        out.extend(parsed if isinstance(parsed, list) else [parsed])
    return out


def import_all(package: str, package_path, sub: str, kind: str) -> None:
    """Import every module of a built-in package (alphabetical; `base` excepted), then each plugin
    directory's `sub`/*.py; a plugin that fails to load is one line naming it, not a traceback."""
    for info in pkgutil.iter_modules(package_path):
        if info.name != "base":
            importlib.import_module(f"{package}.{info.name}")
    for directory in plugin_dirs():
        for path in sorted(Path(directory, sub).glob("*.py")):
            module_name = f"bench_plugin_{sub}.{path.stem}"
            if module_name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:  # a broken plugin is named, not a traceback
                del sys.modules[module_name]
                raise BenchError(f"{kind} plugin {path} failed to load ({type(e).__name__}: {e})") from None
