"""The one rule that turns an option's value (from YAML, --set or a flag) into the type its dataclass field
declares: RunConfig's fields and every method's options go through it, so both accept and refuse alike."""

from __future__ import annotations

import math

from bench.errors import BenchError


def typed(name: str, value, kind: str, owner: str = ""):
    """`value` as `kind` ("int", "float | None", "bool", "str", ...) declares it: booleans true/false only,
    integers whole, numbers finite (a number written as text, e.g. "3e-4", is read as one), text never a
    mapping, list or boolean. A one-line error names the option (and its `owner`, e.g. "for method lora")."""
    base = kind.replace(" | None", "")
    if value is None and ("None" in kind or base not in ("bool", "int", "float", "str")):
        return value
    where = f"option {name}={value!r}" + (f" {owner}" if owner else "")
    bad = BenchError(f"{where} is not a valid {base}" + (": use true or false" if base == "bool" else ""))
    if base == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if base in ("int", "float"):
        if isinstance(value, str):
            try:
                value = (
                    float(value)
                    if base == "float" or not value.strip().lstrip("+-").isdigit()
                    else int(value)
                )
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise BenchError(
                f"option {name}={value}" + (f" {owner}" if owner else "") + " must be a finite number"
            )
        if base == "int":
            if not float(value).is_integer():
                raise bad
            return int(value)
        return float(value)
    if base == "str":
        if isinstance(value, (dict, list, bool)) or value is None:
            raise bad
        return str(value)
    return value
