"""Is the reference the map is assessed against the map's own training data?

Accuracy measured on the polygons a model was trained on says how well it fits them, not how right
the map is (a model can memorise a few dozen polygons). A geosam class map (``<scene>_classes.tif``)
has a run record beside it (``<scene>_run.json``) naming its model bundle, and the bundle's
``model.json`` names the label file it was trained on (``data.labels``, or ``data.label_raster``):
:func:`training_reference` says when the reference is that file (same path, or the same bytes).
Maps of other tools, or geosam maps without their run record, are not checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from geosam.outputs import RECORD_SUFFIX

__all__ = ["training_reference"]

_CLASSES_SUFFIX = "_classes.tif"


def _same_file(a: Path, b: Path) -> bool:
    from geosam.hashing import sha256_file

    try:
        if a.resolve() == b.resolve():
            return True
        return a.stat().st_size == b.stat().st_size and sha256_file(a) == sha256_file(b)
    except OSError:
        return False


def training_reference(map_path: str | os.PathLike[str], reference: str | os.PathLike[str]) -> Path | None:
    """The model bundle whose training labels ``reference`` is, or ``None`` (not, or not known).

    Args:
        map_path: The assessed class map.
        reference: The reference file.
    """
    m = Path(map_path)
    if not m.name.endswith(_CLASSES_SUFFIX):
        return None
    from geosam.errors import GeosamError
    from geosam.models.bundle import read_bundle_meta
    from geosam.record import read_run_record

    record = m.with_name(m.name[: -len(_CLASSES_SUFFIX)] + RECORD_SUFFIX)
    try:
        bundle = Path(read_run_record(record).model.path)
        data = read_bundle_meta(bundle).data
    except GeosamError:  # no record, or no readable bundle: nothing to compare with
        return None
    for key in ("labels", "label_raster"):
        trained = data.get(key)
        if isinstance(trained, str) and _same_file(Path(trained), Path(reference)):
            return bundle
    return None
