"""Configuration plumbing every layer uses: the one error type a user's mistake raises, and
building a typed config dataclass from a Hydra/YAML dict with one-line errors."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, TypeVar


class ConfigError(ValueError):
    """A user's mistake in configuration or input (unknown task, split, option...).

    Command-line entry points print its message without a traceback."""


C = TypeVar("C")


def check_not_held_out(split: str, test_splits: Sequence[str], purpose: str) -> None:
    """Training data never comes from a split held out for evaluation."""
    if split in test_splits:
        raise ConfigError(
            f"{purpose} must not use the held-out {split!r} split (held out: "
            f"{list(test_splits)}); use env.split=train"
        )


def build_config(config_class: type[C], options: dict[str, Any], owner: str) -> C:
    """``config_class(**options)``, where an unknown option name, a value of the wrong type
    (``steps=abc``) or a value the class rejects is a one-line ConfigError naming it."""
    known = sorted(f.name for f in fields(config_class))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"{owner}: unknown option {unknown[0]!r}{did_you_mean(unknown[0], known)}"
        )
    hints = _type_hints(config_class)
    for name, value in options.items():
        if name in hints and not _fits(value, hints[name]):
            raise ConfigError(f"{owner}.{name}={value!r}: expected {_type_name(hints[name])}")
    try:
        return config_class(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{owner}: {e}".splitlines()[0]) from e


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?); known: [...]``: the tail of an unknown-name message."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{hint}; known: {list(known)}"


def _type_hints(config_class: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_class)
    except NameError:  # an annotation names a type imported only for type checking
        return {}


_SCALARS: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    bool: (bool,),
    str: (str,),
}


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as YAML/Hydra gives it) fits a field's annotation; annotations
    other than scalars, optionals and sequences are left to the class to check."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint in _SCALARS:
        is_bool = isinstance(value, bool)
        return isinstance(value, _SCALARS[hint]) and (hint is bool or not is_bool)
    if hint in (list, tuple) or origin in (list, tuple):
        return isinstance(value, list | tuple)
    return True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))
