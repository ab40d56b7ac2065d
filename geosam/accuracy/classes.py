"""Class names of a map and of its reference data, the class-mapping file, and how classes are matched.

Class names. A map value ``v`` is named, in this order, by geosam's ``GEOSAM_CLASS_SCHEME`` tag (value
``i`` is ``names[i]``), by the GDAL category names or raster attribute table of the ``.aux.xml``
side-car (what QGIS, ArcGIS and ``gdal_edit`` write), or else by the value itself (``"3"``). Reference
rasters are named the same way minus the geosam tag; reference vectors by their class field (whole
floats print as integers: ``2.0`` -> ``"2"``).

Class-mapping file (``--classes``). It renames classes into the names they are compared under. YAML::

    # flat: renames a class of that name on either side (map or reference)
    AnnualCrop: agriculture
    PermanentCrop: agriculture
    Cloud: null            # null or "": leave these units out of the assessment

or with sections, when a name must be renamed on one side only::

    description: EuroSAT model output compared with the Raleigh polygons
    map:
      AnnualCrop: agriculture
    reference:
      crops: agriculture

CSV: a header row, then one ``source,target`` pair per row (an empty target drops the class); it renames
on both sides, like the flat YAML. Many-to-one renames merge classes. Names match case-insensitively
(``Forest`` = ``forest``); a class keeps the map's spelling. geosam ships mappings in
``geosam/data/class_maps/``: pass a packaged one by name (``--classes eurosat_to_raleigh``).

Matching (:func:`match_classes`). The assessment's classes are the map's classes (after renaming, in
the map's order), then the reference classes the map does not have. Those *unmatched* reference classes
stay in the error matrix by default (the map is wrong wherever they are: producer's accuracy 0) and are
listed in the report; ``drop_unmatched`` leaves their units out instead.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geosam.config_io import read_yaml
from geosam.errors import ConfigError, DataError

__all__ = [
    "PACKAGED_MAPPINGS",
    "ClassMapping",
    "ClassMatch",
    "label_text",
    "load_class_mapping",
    "match_classes",
    "packaged_mappings",
]

#: Folder of the class-mapping files geosam ships (``geosam/data/class_maps``).
PACKAGED_MAPPINGS = Path(__file__).resolve().parent.parent / "data" / "class_maps"
_SECTIONS = ("map", "reference")
_YAML_SUFFIXES = (".yaml", ".yml", ".json")


def _key(name: str) -> str:
    return name.strip().casefold()


def label_text(value: Any) -> str | None:
    """A class label as text: whole floats print as integers (``2.0`` -> ``"2"``); blanks are ``None``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class ClassMapping:
    """Renames of class names, per side; ``None`` as a target drops the class.

    Attributes:
        map: Map class name (case-folded) -> new name or ``None``.
        reference: Reference class name (case-folded) -> new name or ``None``.
        source: The file it came from (``None`` when built in code).
        description: Free text from the file's ``description`` key.
    """

    map: Mapping[str, str | None] = field(default_factory=dict)
    reference: Mapping[str, str | None] = field(default_factory=dict)
    source: str | None = None
    description: str | None = None

    def rename(self, name: str, side: str) -> str | None:
        """The name ``name`` of ``side`` (``"map"`` or ``"reference"``) is compared under, or ``None``."""
        table = self.map if side == "map" else self.reference
        key = _key(name)
        return table.get(key, name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in the evaluation report)."""
        return {
            "source": self.source,
            "description": self.description,
            "map": dict(self.map),
            "reference": dict(self.reference),
        }


def packaged_mappings() -> list[str]:
    """Names of the class-mapping files shipped in :data:`PACKAGED_MAPPINGS` (without suffix)."""
    if not PACKAGED_MAPPINGS.is_dir():  # pragma: no cover - data folder missing from an install
        return []
    return sorted(p.stem for p in PACKAGED_MAPPINGS.iterdir() if p.suffix in (*_YAML_SUFFIXES, ".csv"))


def _resolve(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    text = os.fspath(path)
    if os.sep not in text and "/" not in text:
        for suffix in ("", ".yaml", ".yml", ".csv"):
            candidate = PACKAGED_MAPPINGS / f"{text}{suffix}"
            if candidate.is_file():
                return candidate
    known = ", ".join(packaged_mappings()) or "none"
    raise ConfigError(
        f"class-mapping file not found; give a YAML/CSV file or a packaged mapping ({known})", path
    )


def _table(raw: Any, where: str, path: Path) -> dict[str, str | None]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must map class names to class names, not {type(raw).__name__}", path)
    out: dict[str, str | None] = {}
    for k, v in raw.items():
        src = label_text(k)
        if src is None:
            raise ConfigError(f"{where} has an empty class name as a key", path)
        if isinstance(v, (Mapping, list, tuple)):
            raise ConfigError(f"{where}: the target of {src!r} must be a class name or null", path)
        dst = label_text(v)
        key = _key(src)
        if key in out and out[key] != dst:
            raise ConfigError(f"{where}: {src!r} is mapped twice, to {out[key]!r} and {dst!r}", path)
        out[key] = dst
    return out


def _read_csv(path: Path) -> dict[str, str | None]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"not a readable CSV file ({err})", path) from None
    if len(rows) < 2:
        raise ConfigError("a class-mapping CSV needs a header row and at least one source,target row", path)
    pairs: dict[str, str | None] = {}
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise ConfigError(f"row {i} has {len(row)} columns; write source,target (two columns)", path)
        pairs[row[0]] = row[1]
    return _table(pairs, "the CSV", path)


def load_class_mapping(path: str | os.PathLike[str]) -> ClassMapping:
    """Read a class-mapping file (format in the module docstring), or a packaged mapping by name.

    Args:
        path: A ``.yaml``/``.yml``/``.json`` or ``.csv`` file, or the name of a packaged mapping
            (:func:`packaged_mappings`).

    Raises:
        ConfigError: The file is missing, unreadable, or not a mapping of names to names.
    """
    p = _resolve(path)
    if p.suffix.lower() == ".csv":
        both = _read_csv(p)
        return ClassMapping(map=both, reference=both, source=os.fspath(p))
    data = read_yaml(p, what="class mapping", noun="class mapping", mapping=False)
    if not isinstance(data, Mapping) or not data:
        raise ConfigError("a class mapping is a non-empty YAML mapping of class names to class names", p)
    keys = {str(k) for k in data}
    description = data.get("description")
    if keys & set(_SECTIONS) and keys <= {*_SECTIONS, "description"}:
        return ClassMapping(
            map=_table(data.get("map"), "the 'map' section", p),
            reference=_table(data.get("reference"), "the 'reference' section", p),
            source=os.fspath(p),
            description=None if description is None else str(description),
        )
    flat = {k: v for k, v in data.items() if k != "description"}
    both = _table(flat, "the mapping", p)
    return ClassMapping(
        map=both,
        reference=both,
        source=os.fspath(p),
        description=None if description is None else str(description),
    )


@dataclass(frozen=True)
class ClassMatch:
    """How the classes of a map and of its reference are compared (see :func:`match_classes`).

    Attributes:
        classes: The assessment's classes: the map's (renamed, in map order), then reference-only ones.
        n_map_classes: ``classes[:n_map_classes]`` are classes the map can give.
        map_index: Map class name -> index in ``classes``, or ``None`` when the mapping drops it.
        reference_index: Reference class name -> index in ``classes``, or ``None`` when dropped (by the
            mapping, or as an unmatched class with ``drop_unmatched``).
        renamed: ``{"map": {name: new}, "reference": {name: new}}`` for the names that changed.
        dropped: ``{"map": [...], "reference": [...]}`` names the mapping drops.
        unmatched_map: Assessment classes of the map that no reference class is compared with.
        unmatched_reference: Reference classes (renamed) that the map does not have.
        drop_unmatched: Whether units of ``unmatched_reference`` classes are left out.
    """

    classes: tuple[str, ...]
    n_map_classes: int
    map_index: Mapping[str, int | None]
    reference_index: Mapping[str, int | None]
    renamed: Mapping[str, Mapping[str, str]]
    dropped: Mapping[str, tuple[str, ...]]
    unmatched_map: tuple[str, ...]
    unmatched_reference: tuple[str, ...]
    drop_unmatched: bool


def match_classes(
    map_names: Sequence[str],
    reference_names: Sequence[str],
    mapping: ClassMapping | None = None,
    *,
    drop_unmatched: bool = False,
    map_path: str | os.PathLike[str] | None = None,
) -> ClassMatch:
    """Match map classes with reference classes by name, after the mapping's renames.

    Args:
        map_names: Every class name the map can hold (its scheme), in map order.
        reference_names: Every class name found in the reference data.
        mapping: Renames (``None``: names are compared as they are, case-insensitively).
        drop_unmatched: Leave out reference units whose class the map does not have (default: keep them
            as errors of the map).
        map_path: The map, named in the error message.

    Raises:
        DataError: No reference class matches any map class (the message lists both and suggests a
            class-mapping file).
    """
    mapping = mapping or ClassMapping()
    classes: list[str] = []
    index: dict[str, int] = {}
    map_index: dict[str, int | None] = {}
    renamed: dict[str, dict[str, str]] = {"map": {}, "reference": {}}
    dropped: dict[str, list[str]] = {"map": [], "reference": []}
    for name in map_names:
        target = mapping.rename(name, "map")
        if target is None:
            map_index[name] = None
            dropped["map"].append(name)
            continue
        if target != name:
            renamed["map"][name] = target
        if _key(target) not in index:
            index[_key(target)] = len(classes)
            classes.append(target)
        map_index[name] = index[_key(target)]
    n_map = len(classes)
    ref_index: dict[str, int | None] = {}
    unmatched_ref: list[str] = []
    matched: set[int] = set()
    for name in reference_names:
        target = mapping.rename(name, "reference")
        if target is None:
            ref_index[name] = None
            dropped["reference"].append(name)
            continue
        if target != name:
            renamed["reference"][name] = target
        i = index.get(_key(target))
        if i is None or i >= n_map:
            if target not in unmatched_ref:
                unmatched_ref.append(target)
            if drop_unmatched:
                ref_index[name] = None
                continue
            if i is None:
                index[_key(target)] = len(classes)
                classes.append(target)
            i = index[_key(target)]
        else:
            matched.add(i)
        ref_index[name] = i
    if reference_names and not matched:
        hint = mapping.source and f" (the mapping {mapping.source} renames none into a map class)"
        raise DataError(
            "no reference class matches a map class"
            + (hint or "")
            + f"; map classes: {', '.join(map_names) or '(none)'}; reference classes: "
            f"{', '.join(reference_names)}; pass a class-mapping file with --classes "
            f"(packaged: {', '.join(packaged_mappings()) or 'none'})",
            map_path,
        )
    return ClassMatch(
        classes=tuple(classes),
        n_map_classes=n_map,
        map_index=map_index,
        reference_index=ref_index,
        renamed=renamed,
        dropped={k: tuple(v) for k, v in dropped.items()},
        unmatched_map=tuple(classes[i] for i in range(n_map) if i not in matched),
        unmatched_reference=tuple(unmatched_ref),
        drop_unmatched=drop_unmatched,
    )
