"""Settings declared once, every interface generated from the declaration.

A dataclass field made with :func:`setting` carries its help text and limits next to its type
and default. From that one declaration come the argparse options (:func:`add_options`,
:func:`from_args`), the pydantic fields of the flows' parameters (:func:`pydantic_fields`) and
the check every construction runs (:func:`check_settings`), so a new setting is one field (and
the code that uses it), never a copy per entry point that can drift from the others.

No prefect or pydantic import here: the pipelines layer stays usable without the flows extras
(:func:`pydantic_fields` imports pydantic when the flows call it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Collection, Iterable
from typing import Any, Literal, NamedTuple, TypeVar

from segrefiner.errors import InputError

__all__ = [
    "REQUIRED",
    "Declared",
    "Setting",
    "add_options",
    "check_settings",
    "from_args",
    "pydantic_fields",
    "setting",
    "settings_of",
]

T = TypeVar("T")

REQUIRED: Any = dataclasses.MISSING  # the default of a setting that has none
_KEY = "setting"  # where setting() keeps its Setting in the field's metadata
_TYPES = (bool, int, float, str)  # what an option and a form field can hold


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a setting declares besides its type and default."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None


class Declared(NamedTuple):
    """One setting of a dataclass, with its type hint resolved."""

    name: str
    type: type  # one of _TYPES; None stripped
    optional: bool  # None is a value (declared ``X | None``)
    default: Any  # REQUIRED when there is none
    spec: Setting


def setting(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Iterable[Any] | None = None,
) -> Any:
    """A dataclass field declaring a setting: ``default`` (:data:`REQUIRED` for none), the
    help every interface shows and the limits every construction checks (with
    :func:`check_settings` in the dataclass's ``__post_init__``)."""
    spec = Setting(help, minimum, maximum, None if choices is None else tuple(choices))
    return dataclasses.field(default=default, metadata={_KEY: spec})


@functools.cache
def settings_of(cls: type) -> tuple[Declared, ...]:
    """The settings of dataclass ``cls``, in field order. Every field must be declared with
    :func:`setting`: one left without help or limits would be a hole in every interface."""
    hints = typing.get_type_hints(cls)
    declared = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(_KEY)
        if not isinstance(spec, Setting):
            raise TypeError(f"{cls.__name__}.{field.name}: not declared with setting()")
        kind, optional = _split_optional(hints[field.name])
        if kind not in _TYPES:
            raise TypeError(f"{cls.__name__}.{field.name}: {kind!r} is not one of {_TYPES}")
        declared.append(Declared(field.name, kind, optional, field.default, spec))
    return tuple(declared)


def _split_optional(hint: Any) -> tuple[Any, bool]:
    # ``X | None`` -> (X, True); ``X`` -> (X, False). Other unions are left for the caller to
    # refuse (no option type can parse them).
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return hint, False


def _problem(setting: Declared, value: Any) -> str | None:
    """What is wrong with ``value`` for ``setting`` (naming the value), or None."""
    spec = setting.spec
    if value is None and setting.optional:
        return None
    if spec.choices is not None and value not in spec.choices:
        return f"must be one of {list(spec.choices)}, got {value!r}"
    low, high = spec.minimum, spec.maximum
    if low is None and high is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {value!r}"
    # written so that NaN fails too
    if low is not None and high is not None and not low <= value <= high:
        return f"must be in [{low}, {high}], got {value!r}"
    if low is not None and not value >= low:
        return f"must be >= {low}, got {value!r}"
    if high is not None and not value <= high:
        return f"must be <= {high}, got {value!r}"
    return None


def check_settings(obj: Any) -> None:
    """Refuse a dataclass whose settings break their declared limits, with an InputError
    naming the setting and the value. Called from ``__post_init__``, so the CLI, the flows and
    Python callers all get the same check before any work starts."""
    for declared in settings_of(type(obj)):
        wrong = _problem(declared, getattr(obj, declared.name))
        if wrong:
            raise InputError(f"{declared.name}: {wrong}")


def _option_type(setting: Declared) -> Callable[[str], Any]:
    # Parse and check at parse time, so a bad value is argparse's one-line usage error (exit 2)
    # before any work, worded as check_settings words it.
    def parse(text: str) -> Any:
        try:
            value = setting.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {setting.type.__name__}, got {text!r}"
            ) from None
        wrong = _problem(setting, value)
        if wrong:
            raise argparse.ArgumentTypeError(wrong)
        return value

    parse.__name__ = setting.type.__name__
    return parse


def add_options(parser: argparse.ArgumentParser, cls: type, exclude: Collection[str] = ()) -> None:
    """One option per setting of ``cls`` but ``exclude``: ``--batch-size`` for ``batch_size``;
    a bool is ``--bf16/--no-bf16``; ``X | None`` takes an X, None by default; a setting
    without a default is a required option. The help is the declared one, with the default
    (shown from the parser, so ``parser.set_defaults`` is reflected)."""
    for declared in settings_of(cls):
        if declared.name in exclude:
            continue
        flag = "--" + declared.name.replace("_", "-")
        help = declared.spec.help.replace("%", "%%")  # argparse formats help with %
        options: dict[str, Any] = {}
        if declared.default is REQUIRED:
            options["required"] = True
        else:
            options["default"] = declared.default
            help += " (default: %(default)s)"
        if declared.type is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = _option_type(declared)
            options["choices"] = declared.spec.choices  # listed in the usage; checked by type
        parser.add_argument(flag, help=help, **options)


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """``cls`` from parsed options: the settings the namespace holds (from
    :func:`add_options`, or an option of the caller's with the same dest), then
    ``overrides``; the others keep their defaults."""
    given = {d.name: getattr(args, d.name) for d in settings_of(cls) if hasattr(args, d.name)}
    return cls(**{**given, **overrides})


def pydantic_fields(cls: type, exclude: Collection[str] = ()) -> dict[str, tuple[Any, Any]]:
    """``pydantic.create_model`` field definitions of the settings of ``cls`` but ``exclude``:
    the same names, order, types and defaults, the help as description, the limits as
    ``ge``/``le`` and choices as a ``Literal``, so the flows' forms refuse what the stage
    would."""
    from pydantic import Field  # the flows' dependency; only the flows call this

    fields: dict[str, tuple[Any, Any]] = {}
    for declared in settings_of(cls):
        if declared.name in exclude:
            continue
        spec = declared.spec
        kind: Any = declared.type if spec.choices is None else Literal[spec.choices]
        annotation = kind | None if declared.optional else kind
        default = ... if declared.default is REQUIRED else declared.default
        info = Field(default, description=spec.help, ge=spec.minimum, le=spec.maximum)
        fields[declared.name] = (annotation, info)
    return fields
