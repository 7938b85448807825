"""Checks for the values of a chapter's ``parameters`` cell, run first thing after papermill's.

Each check returns the value in its canonical form, or raises ``ParameterError`` with one short
message that names the parameter, the value it got and the values it accepts::

    profile = check_choice("profile", profile, PROFILES)    # ... valid values: smoke, cpu, paper
    seeds = as_seed_list(seeds)                              # 1 -> [1]; [0, 1] -> [0, 1]
    models = as_choice_list("models", models, MODELS)        # None -> None; "mlp7" -> ["mlp7"]
    overrides = check_overrides(overrides)                   # None -> {}; unknown keys refused
    run_root = check_str("run_root", run_root, allow_none=True)
    threshold = check_number("threshold", threshold, minimum=1)

Papermill's ``-p NAME VALUE`` turns ``True``/``False``/``None`` and numbers into Python values
and passes everything else as a string, so ``-p seeds "[0, 1]"`` arrives as the *string*
``"[0, 1]"``; lists and dicts come through ``-y "seeds: [0, 1]"``. The checks say so when a
string that looks like a list or a dict reaches them.
"""

from __future__ import annotations

from dataclasses import fields
from numbers import Integral, Real
from typing import Any, Collection, Iterable, Mapping, TypeVar

from ddd_support.config import TrainConfig
from ddd_support.errors import ConfigError

T = TypeVar("T")


class ParameterError(ConfigError):
    """A chapter parameter outside its valid values; the message names them."""


def _yaml_hint(name: str, value: Any) -> str:
    """A hint for list- or dict-like strings: what papermill's ``-p`` makes of ``[...]``/``{...}``."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        return f" (papermill's -p passes text as a string: give lists and dicts with -y \"{name}: {value.strip()}\")"
    return ""


def _fail(name: str, value: Any, valid: str) -> ParameterError:
    return ParameterError(f"{name}: {value!r} is not valid; valid values: {valid}{_yaml_hint(name, value)}")


def check_choice(name: str, value: T, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices`` (any iterable, e.g. a dict's keys)."""
    options = list(choices)
    if any(type(value) is type(c) and value == c for c in options):
        return value
    raise _fail(name, value, ", ".join(map(str, options)))


def as_choice_list(name: str, value: Any, choices: Iterable[str], allow_none: bool = True) -> list[str] | None:
    """A list of distinct ``choices`` from one choice or a list of them; ``None`` stays ``None``
    (meaning "all") when ``allow_none``."""
    options = list(choices)
    valid = f"one of {', '.join(options)}, or a list of them" + (", or None (all)" if allow_none else "")
    if value is None and allow_none:
        return None
    items = [value] if isinstance(value, str) else value
    if (not isinstance(items, (list, tuple)) or not items
            or any(not isinstance(v, str) or v not in options for v in items)
            or len(set(items)) != len(items)):
        raise _fail(name, value, valid)
    return list(items)


def as_seed_list(value: Any, name: str = "seeds") -> list[int]:
    """Seeds as a list of distinct non-negative ints, from one int or a list of them."""
    items = [value] if isinstance(value, Integral) and not isinstance(value, bool) else value
    if (not isinstance(items, (list, tuple)) or not items
            or any(isinstance(v, bool) or not isinstance(v, Integral) or v < 0 for v in items)
            or len(set(items)) != len(items)):
        raise _fail(name, value, "a non-negative int or a non-empty list of distinct ones, e.g. 0 or [0, 1, 2]")
    return [int(v) for v in items]


def as_mapping(name: str, value: Any, keys: Collection[str] | None = None) -> dict[str, Any]:
    """A dict (``None`` -> ``{}``) whose keys, when ``keys`` is given, are all among them."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(name, value, "a dict, e.g. {} or {\"epochs\": 30}")
    unknown = sorted(str(k) for k in value if keys is not None and k not in keys)
    if unknown:
        raise ParameterError(f"{name}: unknown key(s) {', '.join(unknown)}; "
                             f"valid keys: {', '.join(sorted(keys))}")
    return dict(value)


def check_overrides(value: Any, name: str = "overrides") -> dict[str, Any]:
    """Config overrides: a dict whose keys are ``TrainConfig`` fields (``None`` -> ``{}``)."""
    return as_mapping(name, value, [f.name for f in fields(TrainConfig) if f.name not in ("profile", "model", "seed")])


def check_number(name: str, value: Any, minimum: float | None = None, maximum: float | None = None,
                 integer: bool = False) -> Any:
    """A number (an int when ``integer``) within ``[minimum, maximum]``; either bound may be open."""
    kind = "an int" if integer else "a number"
    bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else ""]
    valid = " ".join([kind, " and ".join(b for b in bounds if b)]).strip()
    number = Integral if integer else Real
    if (isinstance(value, bool) or not isinstance(value, number)
            or (minimum is not None and value < minimum) or (maximum is not None and value > maximum)):
        raise _fail(name, value, valid)
    return value


def check_str(name: str, value: Any, allow_none: bool = False) -> str | None:
    """A non-empty string (a folder, a name), or ``None`` when ``allow_none``."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip() or _yaml_hint(name, value):
        raise _fail(name, value, "a non-empty string" + (", or None" if allow_none else ""))
    return value


def as_str_list(name: str, value: Any, allow_none: bool = True) -> list[str] | None:
    """A non-empty list of non-empty strings (e.g. run directories) from one string or a list."""
    if value is None and allow_none:
        return None
    items = [value] if isinstance(value, str) and not _yaml_hint(name, value) else value
    if not isinstance(items, (list, tuple)) or not items or any(not isinstance(v, str) or not v for v in items):
        raise _fail(name, value, "a string or a non-empty list of strings" + (", or None" if allow_none else ""))
    return list(items)
