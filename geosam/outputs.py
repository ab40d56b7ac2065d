"""A scene's outputs as one value: their safe names and every file that belongs to them.

Every module that needs to know which files make up a scene's results (the predict recipe, the
scene writer, batch ``--skip-existing`` and cleanup, ingest, STAC) asks :class:`SceneOutputs` instead
of spelling suffixes itself. Outputs for scene ``<s>`` in a folder:

=========================== ===================================================================
``<s>_classes.tif``         COG, uint8 class per pixel (+ ``<s>_classes.tif.aux.xml``, ``<s>_classes.qml``)
``<s>_confidence.tif``      COG, probability of the chosen class (+ ``<s>_confidence.qml``)
``<s>_regions.geojson``     regions in EPSG:4326 (RFC 7946) (+ ``<s>_regions.qml``, shared with the GPKG)
``<s>_regions.gpkg``        regions in the scene CRS
``<s>_tiles.gpkg``          tile cores with the tile class and probabilities (+ ``<s>_tiles.qml``)
``<s>_probabilities.tif``   COG, per-pixel class probabilities (dense models, when asked; + ``.qml``)
``<s>.qgs``                 QGIS project opening all layers styled
``<s>_stac_item.json``      STAC item (only when STAC output is asked for)
``<s>_run.json``            run record (:mod:`geosam.record`), written last
=========================== ===================================================================

Names come from :func:`output_stem`: the scene file's stem only (outputs never leave the folder), with
characters that GDAL, pyogrio or QGIS read as syntax replaced, and shortened with a hash when long.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from geosam.io.pam import pam_path
from geosam.io.style import qml_path

__all__ = [
    "OUTPUT_KINDS",
    "RECORD_SUFFIX",
    "STAC_ITEM_SUFFIX",
    "SceneOutputs",
    "output_paths",
    "output_stem",
    "safe_name",
]

#: Output kind -> file name suffix after the stem, in the order outputs are listed.
_SUFFIXES: dict[str, str] = {
    "classes": "_classes.tif",
    "confidence": "_confidence.tif",
    "regions_geojson": "_regions.geojson",
    "regions_gpkg": "_regions.gpkg",
    "tiles_gpkg": "_tiles.gpkg",
    "probabilities": "_probabilities.tif",
    "qgis_project": ".qgs",
    "record": "_run.json",
}
OUTPUT_KINDS: tuple[str, ...] = tuple(_SUFFIXES)
"""Kinds of output a run writes (keys of :attr:`SceneOutputs.paths`)."""

RECORD_SUFFIX = _SUFFIXES["record"]
"""Suffix of a scene's run record."""

STAC_ITEM_SUFFIX = "_stac_item.json"
"""Suffix of a scene's STAC item."""

#: Kinds that get no QGIS ``.qml`` style next to them.
_UNSTYLED = frozenset({"qgis_project", "record"})
#: GDAL sidecars geosam never writes that would attach themselves to a new ``x.tif`` (external overviews
#: and masks another tool may have left).
_FOREIGN_SIDECARS = (".ovr", ".msk")

#: Characters of scene names that are not kept in output names: control characters; ``;`` and ``!``,
#: which GDAL's vector writers (pyogrio) read as URI parameters and archive separators and so write to
#: another file; ``|`` (QGIS data-source separator); and ``\\``.
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f;!|\\]")
#: Stems longer than this (UTF-8 bytes) are cut and suffixed with a hash of the whole stem, so
#: ``<stem>_confidence.tif`` and its temporary names stay under the 255-byte file-name limit.
_MAX_STEM_BYTES = 160


def output_stem(scene: str | os.PathLike[str]) -> str:
    """The name a scene's outputs start with: the scene file's stem, made safe for GDAL and QGIS.

    Only the stem is used, so outputs stay inside the output directory whatever the scene's path
    (``../../x.tif`` gives ``x``). Characters in :data:`_UNSAFE_NAME_CHARS` become ``_``; a stem longer
    than 160 bytes is cut and gets ``-<8 hex digits of its sha256>``.
    """
    raw = Path(scene).stem
    stem = _UNSAFE_NAME_CHARS.sub("_", raw) or "scene"
    data = stem.encode("utf-8", "surrogateescape")
    if len(data) > _MAX_STEM_BYTES:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        stem = data[: _MAX_STEM_BYTES - 9].decode("utf-8", "ignore") + "-" + digest
    return stem


def safe_name(text: str, *, max_len: int = 100) -> str:
    """A folder name made from ``text``: ``[A-Za-z0-9._-]`` only, no leading dot, never ``..``.

    Runs of other characters become ``_``; over-long names are cut and get a hash of ``text``.

    >>> safe_name("../../etc/passwd")
    'etc_passwd'
    >>> safe_name("S2A 2024/06 (ok).tif")
    'S2A_2024_06_ok_.tif'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "scene"
    if len(name) > max_len:
        name = name[: max_len - 9] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return name


@dataclass(frozen=True)
class SceneOutputs:
    """The files of one scene's outputs in one folder.

    Attributes:
        directory: The folder the outputs are in.
        stem: The name every output starts with (:func:`output_stem` of the scene).
    """

    directory: Path
    stem: str

    @classmethod
    def for_scene(cls, scene: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> SceneOutputs:
        """The outputs of ``scene`` in ``out_dir`` (named after :func:`output_stem`)."""
        return cls(Path(out_dir), output_stem(scene))

    @classmethod
    def from_record_path(cls, record: str | os.PathLike[str]) -> SceneOutputs:
        """The outputs whose run record is ``record`` (``<dir>/<stem>_run.json``)."""
        p = Path(record)
        stem = p.name[: -len(RECORD_SUFFIX)] if p.name.endswith(RECORD_SUFFIX) else p.stem
        return cls(p.parent, stem)

    def in_directory(self, directory: str | os.PathLike[str]) -> SceneOutputs:
        """The same names in another folder (a staging folder, for example)."""
        return SceneOutputs(Path(directory), self.stem)

    def path(self, kind: str) -> Path:
        """The file of output ``kind`` (one of :data:`OUTPUT_KINDS`).

        Raises:
            KeyError: ``kind`` is not an output kind.
        """
        return self.directory / f"{self.stem}{_SUFFIXES[kind]}"

    @property
    def paths(self) -> dict[str, Path]:
        """Output file of each kind, in :data:`OUTPUT_KINDS` order."""
        return {kind: self.path(kind) for kind in OUTPUT_KINDS}

    @property
    def classes(self) -> Path:
        """The class map COG."""
        return self.path("classes")

    @property
    def confidence(self) -> Path:
        """The confidence COG."""
        return self.path("confidence")

    @property
    def record(self) -> Path:
        """The run record."""
        return self.path("record")

    @property
    def stac_item(self) -> Path:
        """The scene's STAC item."""
        return self.directory / f"{self.stem}{STAC_ITEM_SUFFIX}"

    def sidecars(self, kind: str) -> tuple[Path, ...]:
        """Files written beside output ``kind``: its ``.qml`` style and, for GeoTIFFs, GDAL's ``.aux.xml``."""
        p = self.path(kind)
        out = [] if kind in _UNSTYLED else [qml_path(p)]
        if p.suffix == ".tif":
            out.append(pam_path(p))
        return tuple(out)

    def pam_sidecars(self) -> dict[str, Path]:
        """GDAL PAM sidecar (``.aux.xml``) of each GeoTIFF output, keyed ``<kind>_aux``.

        ``classes_aux`` holds the class names as GDAL categories and a raster attribute table: a copy of
        the class map without it shows class ids instead of names. The run record and the STAC item list
        the ones that exist.
        """
        kinds = ("classes", "confidence", "probabilities")
        return {f"{kind}_aux": pam_path(self.path(kind)) for kind in kinds}

    def files(self) -> list[Path]:
        """Every file a run writes for the scene: outputs and their sidecars (no STAC item), once each."""
        files: dict[Path, None] = {}
        for kind in OUTPUT_KINDS:
            files[self.path(kind)] = None
            files.update(dict.fromkeys(self.sidecars(kind)))
        return list(files)

    def all_files(self) -> list[Path]:
        """:meth:`files` plus the STAC item: everything of the scene's that may be in the folder."""
        return [*self.files(), self.stac_item]

    def foreign_sidecars(self) -> list[Path]:
        """GDAL sidecars that another tool may have left beside the GeoTIFFs (``.ovr``, ``.msk``).

        geosam never writes them, but GDAL would attach them to a new ``x.tif``: they go when it is
        replaced.
        """
        return [
            Path(f"{self.path(kind)}{ext}")
            for kind in ("classes", "confidence", "probabilities")
            for ext in _FOREIGN_SIDECARS
        ]


def output_paths(scene: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Output file of each kind for a scene (``SceneOutputs.for_scene(scene, out_dir).paths``)."""
    return SceneOutputs.for_scene(scene, out_dir).paths
