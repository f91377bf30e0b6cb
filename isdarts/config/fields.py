"""The value readers every params section uses: each names the key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from isdarts.errors import ConfigError


def fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"params.yaml: {key} = {value!r} is not allowed; expected {allowed}")


def read_int(d: dict, key: str, prefix: str, *, minimum: int | None = None) -> int:
    value = required(d, key, prefix)
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"{prefix}{key}", value, "an integer")
    if minimum is not None and value < minimum:
        raise fail(f"{prefix}{key}", value, f"an integer >= {minimum}")
    return value


def read_float(d: dict, key: str, prefix: str, *, minimum: float = 0.0, allow_equal: bool = True) -> float:
    value = required(d, key, prefix)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(f"{prefix}{key}", value, "a finite number")
    if value < minimum or (not allow_equal and value == minimum):
        relation = ">=" if allow_equal else ">"
        raise fail(f"{prefix}{key}", value, f"a number {relation} {minimum}")
    return float(value)


def read_bool(d: dict, key: str, prefix: str) -> bool:
    value = required(d, key, prefix)
    if not isinstance(value, bool):
        raise fail(f"{prefix}{key}", value, "true or false")
    return value


def read_choice(d: dict, key: str, prefix: str, choices: tuple[str, ...]) -> str:
    value = required(d, key, prefix)
    if value not in choices:
        raise fail(f"{prefix}{key}", value, "one of " + ", ".join(choices))
    return value


def required(d: dict, key: str, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"params.yaml: {prefix.rstrip('.')} must be a mapping, got {d!r}")
    if key not in d:
        raise ConfigError(f"params.yaml: missing key {prefix}{key}")
    return d[key]


def no_unknown(d: dict, prefix: str, known: set[str]) -> None:
    if not isinstance(d, dict):
        raise ConfigError(
            f"params.yaml: {prefix.rstrip('.') or 'the file'} must be a mapping with keys "
            f"{', '.join(sorted(known))}; got {d!r}"
        )
    unknown = sorted(set(map(str, d)) - known)
    if unknown:
        raise ConfigError(
            f"params.yaml: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"allowed under {prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}"
        )



def read_names(d: dict, key: str, prefix: str, allowed: tuple[str, ...], what: str = "names") -> tuple[str, ...]:
    """A non-empty list of distinct names from `allowed`, checked before hashing so a nested mapping is refused."""
    value = required(d, key, prefix)
    choices = f"{what} from " + ", ".join(allowed)
    if not isinstance(value, list) or not value:
        raise fail(prefix + key, value, f"a non-empty list of distinct {choices}")
    for name in value:
        if not isinstance(name, str) or name not in allowed:
            raise fail(prefix + key, name, choices)
    if len(set(value)) != len(value):
        raise fail(prefix + key, value, f"a list of distinct {choices} (each once)")
    return tuple(value)


def read_text(d: dict, key: str, prefix: str) -> str:
    """A non-blank string (a label that a table prints)."""
    value = required(d, key, prefix)
    if not isinstance(value, str) or not value.strip():
        raise fail(prefix + key, value, "a non-empty string")
    return value


def read_int_or_all(d: dict, key: str, prefix: str) -> int | None:
    raw = required(d, key, prefix)
    if raw == "all":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    raise fail(prefix + key, raw, "'all' or a positive integer")



def read_auto_bool(d: dict, key: str, prefix: str) -> str | bool:
    """`auto`, true or false: a speed setting that `auto` decides per device."""
    value = required(d, key, prefix)
    if value != "auto" and not isinstance(value, bool):
        raise fail(prefix + key, value, "auto, true or false")
    return value


def read_choice_int(d: dict, key: str, prefix: str, choices: tuple[int, ...]) -> int:
    value = required(d, key, prefix)
    if isinstance(value, bool) or value not in choices:
        raise fail(prefix + key, value, "one of " + ", ".join(map(str, choices)))
    return value



def read_typed_fields(cls: type, d: dict, prefix: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Read `names` from `d` with the types the dataclass `cls` declares for them."""
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for name in names:
        kind = types[name]
        if kind in ("int",):
            out[name] = read_int(d, name, prefix, minimum=0)
        elif kind in ("float",):
            out[name] = read_float(d, name, prefix)
        elif kind in ("bool",):
            out[name] = read_bool(d, name, prefix)
        else:
            value = required(d, name, prefix)
            if not isinstance(value, str):
                raise fail(prefix + name, value, "a string")
            out[name] = value
    return out


def build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Construct a config dataclass; its own range checks become ConfigErrors naming the section."""
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"params.yaml: {prefix.rstrip('.')}: {exc}") from None

