"""Click options generated from the fields of a pydantic configuration model (``geosam train``'s).

An option is made from a (dotted) field: its flag from the name (``last_n`` -> ``--last-n``, a nested
``dense.steps`` -> ``--dense-steps``), its type from the annotation (``int``, ``float``, a path, a
``Literal`` choice, a ``--x/--no-x`` pair for ``bool``; lists and mappings are text that the model
parses, ``3,2,1`` or ``1=water,2=forest``) and its help from the model's ``Attributes:`` docstring
(:func:`geosam.config_io.field_descriptions`) followed by the field's default. Every option defaults to
``None``, meaning "not given", so that a value from ``--config`` YAML holds unless the option is given:
command line > YAML > the model's defaults.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from geosam.config_io import field_descriptions, nested_model

__all__ = ["FieldOption", "field_options", "given_values", "leaf_fields", "option_decorator"]

F = TypeVar("F", bound=Callable[..., Any])

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_NONE = re.compile(r"(^|\. |\(|; )``None``: ")


@dataclass(frozen=True)
class FieldOption:
    """A click option for the model field ``path`` (dotted); its value arrives as parameter ``dest``."""

    path: str
    dest: str
    flags: tuple[str, ...]
    decls: tuple[str, ...]
    attrs: Mapping[str, Any]

    def make(self) -> click.Option:
        """A new click option (commands do not share parameter objects)."""
        return click.Option(list(self.decls), **self.attrs)


def _field(model: type[BaseModel], path: str) -> tuple[type[BaseModel], str, FieldInfo]:
    """``(owner model, name, FieldInfo)`` of a dotted field."""
    *parents, name = path.split(".")
    for part in parents:
        nested = nested_model(model.model_fields[part].annotation)
        if nested is None:
            raise KeyError(f"{part!r} of {path!r} is not a nested model")
        model = nested
    return model, name, model.model_fields[name]


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def leaf_fields(model: type[BaseModel], *, skip: Iterable[str] = (), prefix: str = "") -> list[str]:
    """Dotted paths of every field of ``model`` that is not itself a model (nested models expanded).

    ``skip``: dotted paths left out, with everything under them.
    """
    skipped = set(skip)
    out: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        if path in skipped:
            continue
        nested = nested_model(info.annotation)
        out += [path] if nested is None else leaf_fields(nested, skip=skipped, prefix=f"{path}.")
    return out


def _help_text(text: str) -> str:
    """Docstring reST as plain help text: ``x`` -> `x`, :mod:`a.b` -> a.b, "``None``: x" -> "Default: x"."""
    text = _NONE.sub(lambda m: m.group(1) + ("Default: " if m.group(1) in ("", ". ") else "default: "), text)
    return _ROLE.sub(r"\1", text).replace("``", "`")


def _default_text(info: FieldInfo) -> str | None:
    if info.default_factory is not None or info.is_required():
        return None
    value = info.default
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def _click_type(annotation: Any) -> Any:
    a = _unwrap(annotation)
    origin = typing.get_origin(a)
    if origin is Literal:
        return click.Choice([str(v) for v in typing.get_args(a)])
    if origin in (list, tuple, dict) or a is str:
        return str
    if a is Path:
        return click.Path(path_type=Path)
    if a in (int, float):
        return a
    raise TypeError(f"no command-line option for a field of type {annotation!r}")


def field_options(
    model: type[BaseModel],
    paths: Iterable[str],
    *,
    flatten: Iterable[str] = (),
    flags: Mapping[str, tuple[str, ...]] | None = None,
    defaults: Mapping[str, str] | None = None,
    metavars: Mapping[str, str] | None = None,
) -> tuple[FieldOption, ...]:
    """Options for the dotted fields ``paths`` of ``model``.

    Args:
        model: The configuration model.
        paths: Dotted fields, in the order the options are listed.
        flatten: Nested models whose fields get no prefix (``sampling.chip_size`` -> ``--chip-size``).
        flags: Dotted field -> its flags, where they are not the field's name (``gsd_m`` -> ``--gsd``).
        defaults: Dotted field -> the ``[default: ...]`` text, where the field's default is not it.
        metavars: Dotted field -> metavar.
    """
    flat = tuple(f"{p}." for p in flatten)
    out = []
    for path in paths:
        owner, name, info = _field(model, path)
        short = next((path[len(p) :] for p in flat if path.startswith(p)), path)
        dest = short.replace(".", "_")
        names: tuple[str, ...] = (flags or {}).get(path, (f"--{dest.replace('_', '-')}",))
        text = _help_text(field_descriptions(owner).get(name, ""))
        default = (defaults or {}).get(path, _default_text(info))
        help_text = f"{text} [default: {default}]" if default is not None else text
        attrs: dict[str, Any] = {"default": None, "help": help_text}
        decls: tuple[str, ...]
        if _unwrap(info.annotation) is bool:
            flag = names[0].removeprefix("--")
            names, decls = (f"--{flag}", f"--no-{flag}"), (f"--{flag}/--no-{flag}", dest)
        else:
            decls = (*names, dest)
            attrs["type"] = _click_type(info.annotation)
            attrs["metavar"] = (metavars or {}).get(path)
        out.append(FieldOption(path, dest, names, decls, attrs))
    return tuple(out)


def option_decorator(options: Iterable[FieldOption]) -> Callable[[F], F]:
    """A decorator adding ``options`` to a click command, listed in order."""
    opts = list(options)

    def decorate(f: F) -> F:
        params = getattr(f, "__click_params__", [])
        params.extend(o.make() for o in reversed(opts))
        f.__click_params__ = params  # type: ignore[attr-defined]
        return f

    return decorate


def given_values(options: Iterable[FieldOption], kw: dict[str, Any]) -> dict[str, Any]:
    """Pop each option's value from the command's keyword arguments; dotted field -> value, if given."""
    out = {}
    for o in options:
        value = kw.pop(o.dest, None)
        if value is not None:
            out[o.path] = value
    return out
