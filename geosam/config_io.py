"""Reading configuration files and reporting what is wrong with them, the same way for every file.

geosam reads run configurations (:mod:`geosam.config`), training configurations
(:mod:`geosam.train.config`), ingest configurations (:mod:`geosam.ingest.config`) and class mappings
(:mod:`geosam.accuracy.classes`). All of them go through :func:`read_yaml`, check their
``schema_version`` with :func:`check_schema_version` and report pydantic validation errors with
:func:`format_validation_error`, so a bad file always gives one line that names the file, the key and,
where there is one, the remedy. :func:`field_descriptions` reads a model's ``Attributes:`` docstring,
which is where ``geosam train`` gets its options' help (:mod:`geosam.cli.config_options`).

Importing this module imports neither yaml nor pydantic (``import geosam`` stays light).
"""

from __future__ import annotations

import inspect
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosam.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

__all__ = [
    "check_schema_version",
    "field_descriptions",
    "format_validation_error",
    "nested_model",
    "read_yaml",
]


def read_yaml(
    path: str | os.PathLike[str],
    *,
    what: str = "configuration",
    noun: str = "file",
    mapping: bool = True,
) -> Any:
    """Read a YAML (or JSON, a subset of YAML) file with ``yaml.safe_load``.

    Args:
        path: The file.
        what: What the file is, for messages ("configuration", "ingest configuration"...).
        noun: What an unparsable file is called in the message ("file", "class mapping").
        mapping: The top level must be a mapping; an empty file is ``{}``.

    Raises:
        ConfigError: The file is missing, unreadable, not YAML, nested too deeply, or (with ``mapping``)
            not a mapping. The message starts with the path.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file not found", p)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"not a valid YAML/JSON {noun} ({first})", p) from None
    except RecursionError:
        raise ConfigError(f"not a valid {what}: the YAML is nested too deeply", p) from None
    if mapping:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(f"a {what} must be a mapping, not {type(data).__name__}", p)
    return data


def check_schema_version(
    data: Mapping[str, Any], current: int, source: str | os.PathLike[str] | None = None
) -> int:
    """The ``schema_version`` of a configuration mapping (``1`` when absent), if this geosam reads it.

    Raises:
        ConfigError: Not an integer in ``1..current``; the message says what to do.
    """
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= current:
        remedy = (
            "a newer geosam wrote it: upgrade geosam, or write it for this one (schema_version: "
            f"{current} and none of the newer keys)"
            if isinstance(version, int) and not isinstance(version, bool) and version > current
            else f"set schema_version to a whole number 1..{current}, or leave it out (1)"
        )
        raise ConfigError(
            f"schema_version {version!r} is not supported by this geosam (supports 1..{current}); {remedy}",
            source,
        )
    return version


def format_validation_error(
    err: ValidationError,
    source: str | os.PathLike[str] | None = None,
    *,
    what: str = "configuration",
    model: type[BaseModel] | None = None,
    flags: Mapping[str, str] | None = None,
) -> str:
    """Turn a pydantic error into one readable line naming each bad key (dotted) or command-line option.

    Args:
        err: The validation error.
        source: The file the values came from; named unless every bad value came from an option.
        what: What was validated ("configuration", "training configuration", "bundle metadata"...).
        model: The validated model: an unknown key then lists the known keys at its level (and the
            nested key it may have meant).
        flags: Dotted field -> command-line option, for the values given on the command line: their
            errors name the option (``--epochs``) instead of the key.
    """
    given = dict(flags or {})
    parts: list[str] = []
    from_file = False
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        flag = next((given[k] for k in _prefixes(loc) if k in given), None)
        if e["type"] == "extra_forbidden":
            from_file = True
            parts.append(f"unknown key '{loc}'" + _known_keys(model, tuple(e["loc"])))
        elif flag is not None:
            parts.append(f"{flag}: {msg}")
        else:
            from_file = True
            parts.append(f"'{loc}': {msg}" if loc else msg)
    head = f"invalid {what}" if source is None or not from_file else f"invalid {what} in {os.fspath(source)}"
    return f"{head}: " + "; ".join(parts)


def _prefixes(loc: str) -> list[str]:
    """``a.b.c`` -> ``["a.b.c", "a.b", "a"]``: the option of a field also owns the field's items."""
    bits = loc.split(".")
    return [".".join(bits[:i]) for i in range(len(bits), 0, -1)]


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``M``, ``M | None``), or ``None`` for other fields."""
    from pydantic import BaseModel

    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    for a in args:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _known_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """`` (known keys: ...)`` at the level of the unknown key ``loc[-1]``, or ``""`` without a model."""
    node = model
    for part in loc[:-1]:
        field = node.model_fields.get(str(part)) if node is not None else None
        node = nested_model(field.annotation) if field is not None else None
    if node is None:
        return ""
    hint = ""
    for name, field in node.model_fields.items():
        nested = nested_model(field.annotation)
        if nested is not None and str(loc[-1]) in nested.model_fields:
            hint = f"; did you mean '{name}.{loc[-1]}'?"
            break
    return f" (known keys: {', '.join(node.model_fields)}{hint})"


_SECTION = re.compile(r"^(\s*)(Attributes|Args|Arguments):\s*$")
_ENTRY = re.compile(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def field_descriptions(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> description: ``Field(description=...)``, else the class docstring's ``Attributes:``.

    The docstring section is Google style: ``name: text`` entries, continuation lines indented deeper;
    the text is returned on one line. Fields documented nowhere are left out.
    """
    out: dict[str, str] = {}
    lines = inspect.cleandoc(model.__doc__ or "").splitlines()
    indent: int | None = None
    entry_indent: int | None = None
    current: str | None = None
    for line in lines:
        if indent is None:
            m = _SECTION.match(line)
            if m and m.group(2) == "Attributes":
                indent = len(m.group(1))
            continue
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth <= indent:
            break  # the next section
        if entry_indent is None:
            entry_indent = depth
        entry = _ENTRY.match(line.strip()) if depth == entry_indent else None
        if entry is not None:
            current = entry.group(1)
            out[current] = entry.group(2).strip()
        elif current is not None:
            out[current] = f"{out[current]} {line.strip()}".strip()
    for name, field in model.model_fields.items():
        if field.description:
            out[name] = field.description
    return {k: v for k, v in out.items() if k in model.model_fields}
