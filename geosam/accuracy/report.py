"""An :class:`~geosam.accuracy.evaluate.Evaluation` as JSON, confusion-matrix PNGs and a terminal table.

Files, for a map ``x_classes.tif`` (written atomically, all together):

* ``x_classes_evaluation.json``: every number, the error matrices with their class order and axes, the
  class mapping used, and the counts of units compared and left out (schema in docs/evaluation.md).
  Undefined values (``NaN``) are ``null``.
* ``x_classes_confusion.png``: the matrix of reference units (pixels or points); rows are reference
  classes normalised to 1, so the diagonal shows producer's accuracy; cells give the counts.
* ``x_classes_confusion_polygons.png``: the same for the per-polygon majority (polygon references).

:func:`render` builds the terminal table as a rich renderable; the CLI prints it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosam.accuracy.evaluate import Assessment, Evaluation

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["SAMPLING_NOTE", "render", "report_paths", "to_dict", "write_report"]

#: What the area-weighted estimates assume; repeated in the JSON so that it travels with the numbers.
SAMPLING_NOTE = (
    "Area-weighted estimates (Olofsson et al. 2014, map classes as strata) are unbiased, and their "
    "confidence intervals valid, when the reference units are a probability sample of the map (simple "
    "random, stratified random or systematic). Pixels inside hand-drawn polygons are neither random nor "
    "independent: read these intervals as far too narrow for them."
)


def _num(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) or math.isinf(f) else f


def _est(value: float, se: float, z: float, scale: float = 1.0) -> dict[str, Any]:
    hw = z * se
    return {
        "estimate": _num(value * scale),
        "se": _num(se * scale),
        "ci_half_width": _num(hw * scale),
        "ci": [_num((value - hw) * scale), _num((value + hw) * scale)],
    }


def _assessment(a: Assessment, classes: Sequence[str], ev: Evaluation) -> dict[str, Any]:
    g = a.agreement
    out: dict[str, Any] = {
        "units": a.units,
        "n": g.n,
        "excluded": dict(a.excluded),
        "confusion_matrix": {
            "rows": "map",
            "columns": "reference",
            "classes": list(classes),
            "counts": g.counts.tolist(),
        },
        "overall_accuracy": _num(g.overall_accuracy),
        "kappa": _num(g.kappa),
        "mean_iou": _num(g.mean_iou),
        "macro_f1": _num(g.macro_f1),
        "per_class": {
            c: {
                "map_units": int(g.counts[i].sum()),
                "reference_units": int(g.counts[:, i].sum()),
                "correct": int(g.counts[i, i]),
                "users_accuracy": _num(g.users_accuracy[i]),
                "producers_accuracy": _num(g.producers_accuracy[i]),
                "f1": _num(g.f1[i]),
                "iou": _num(g.iou[i]),
            }
            for i, c in enumerate(classes)
        },
    }
    s = a.stratified
    if s is not None:
        px = ev.map.pixel_area_m2
        per: dict[str, Any] = {}
        for i, c in enumerate(classes):
            entry: dict[str, Any] = {
                "mapped_pixels": int(ev.mapped_pixels[i]),
                "stratum_weight": _num(s.weights[i]),
                "users_accuracy": _est(s.users_accuracy[i], s.users_accuracy_se[i], s.z),
                "producers_accuracy": _est(s.producers_accuracy[i], s.producers_accuracy_se[i], s.z),
                "area_proportion": _est(s.area_proportion[i], s.area_proportion_se[i], s.z),
                "area_pixels": _est(s.area[i], s.area_se[i], s.z),
            }
            if px is not None:
                entry["area_ha"] = _est(s.area[i], s.area_se[i], s.z, px / 10_000.0)
            per[c] = entry
        out["area_adjusted"] = {
            "method": "Olofsson et al. (2014), Remote Sensing of Environment 148: 42-57; map classes as "
            "strata",
            "confidence": s.confidence,
            "z": s.z,
            "total_mapped_pixels": int(ev.mapped_pixels.sum()),
            "pixel_area_m2": px,
            "overall_accuracy": _est(s.overall_accuracy, s.overall_accuracy_se, s.z),
            "error_matrix_proportions": s.proportions.tolist(),
            "unsampled_strata": [classes[int(i)] for i in np.flatnonzero(~s.sampled & (s.mapped_area > 0))],
            "unsampled_weight": _num(s.unsampled_weight),
            "per_class": per,
            "note": SAMPLING_NOTE,
        }
    return out


def to_dict(ev: Evaluation) -> dict[str, Any]:
    """Every number of an evaluation as a JSON-ready dict (``NaN`` -> ``None``)."""
    import geosam

    m = ev.match
    return {
        "geosam_version": geosam.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "map": {
            "path": os.path.abspath(ev.map.path),
            "crs": ev.map.crs_name,
            "width": ev.map.width,
            "height": ev.map.height,
            "dtype": ev.map.dtype,
            "pixel_area_m2": ev.map.pixel_area_m2,
            "class_names_from": ev.map.names_from,
        },
        "reference": {"path": os.path.abspath(ev.reference), "kind": ev.kind, **ev.reference_info},
        "options": ev.config.model_dump(),
        "classes": list(ev.classes),
        "class_mapping": ev.mapping.to_dict() if ev.mapping is not None else None,
        "renamed": {side: dict(v) for side, v in m.renamed.items()},
        "dropped": {side: list(v) for side, v in m.dropped.items()},
        "unmatched": {
            "map": list(m.unmatched_map),
            "reference": list(m.unmatched_reference),
            "reference_units": "left out" if m.drop_unmatched else "kept: errors of the map",
        },
        "mapped_pixels": {c: int(ev.mapped_pixels[i]) for i, c in enumerate(ev.classes)},
        ev.units.units: _assessment(ev.units, ev.classes, ev),
        **({"polygons": _assessment(ev.polygons, ev.classes, ev)} if ev.polygons is not None else {}),
    }


def report_paths(ev: Evaluation, out_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Paths of the report files: ``json``, ``png`` and (polygons) ``png_polygons``.

    Args:
        ev: The evaluation.
        out_dir: Folder of the files (default: the map's folder).
    """
    folder = Path(out_dir) if out_dir is not None else Path(ev.map.path).parent
    stem = Path(ev.map.path).stem
    paths = {"json": folder / f"{stem}_evaluation.json", "png": folder / f"{stem}_confusion.png"}
    if ev.polygons is not None:
        paths["png_polygons"] = folder / f"{stem}_confusion_polygons.png"
    return paths


def _png(a: Assessment, classes: Sequence[str], ref_name: str) -> bytes:
    from geosam.train.report import confusion_matrix_png

    title = f"{a.units}: OA {a.agreement.overall_accuracy:.3f}, kappa {a.agreement.kappa:.3f} ({ref_name})"
    # The helper normalises rows: put the reference in rows, so rows show producer's accuracy.
    return confusion_matrix_png(a.agreement.counts.T, classes, title, xlabel="map", ylabel="reference")


def write_report(ev: Evaluation, out_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Write the JSON and PNG files of :func:`report_paths`, atomically (all appear or none).

    Args:
        ev: The evaluation.
        out_dir: Folder of the files, created if missing (default: the map's folder).

    Raises:
        OutputError: The folder cannot be created or cannot take the files.
    """
    from geosam.io.atomic import atomic_paths

    paths = report_paths(ev, out_dir)
    if out_dir is not None:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            from geosam.errors import OutputError

            reason = err.strerror or str(err)
            raise OutputError(
                f"cannot create the report folder ({reason}); choose another --out", out_dir
            ) from None
    payload = json.dumps(to_dict(ev), indent=2).encode()
    ref_name = Path(ev.reference).name
    pngs = {"png": _png(ev.units, ev.classes, ref_name)}
    if ev.polygons is not None:
        pngs["png_polygons"] = _png(ev.polygons, ev.classes, ref_name)
    keys = list(paths)
    with atomic_paths([paths[k] for k in keys]) as temps:
        for key, tmp in zip(keys, temps, strict=True):
            tmp.write_bytes(payload if key == "json" else pngs[key])
    return paths


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.1f}"


def _pm(v: float, se: float, z: float, scale: float = 100.0, fmt: str = "{:.1f}") -> str:
    if math.isnan(v):
        return "-"
    hw = "?" if math.isnan(se) else fmt.format(z * se * scale)
    return f"{fmt.format(v * scale)} ± {hw}"


def render(ev: Evaluation) -> RenderableType:
    """The evaluation as a rich table plus summary lines (print with a ``rich.console.Console``)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    a = ev.units
    g, s = a.agreement, a.stratified
    px = ev.map.pixel_area_m2
    area_unit = "ha" if px is not None else "px"
    scale = px / 10_000.0 if px is not None else 1.0
    t = Table(
        title=f"{Path(ev.map.path).name} vs {Path(ev.reference).name} ({a.units})", title_justify="left"
    )
    unit = "px" if a.units == "pixels" else a.units
    for col, just in (
        ("class", "left"),
        (f"ref {unit}", "right"),
        (f"map {unit}", "right"),
        ("PA %", "right"),
        ("UA %", "right"),
        ("F1 %", "right"),
        ("IoU %", "right"),
        ("map %", "right"),
        (f"area {area_unit} ± CI", "right"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for i, c in enumerate(ev.classes):
        area = "-"
        if s is not None:
            area = _pm(s.area[i], s.area_se[i], s.z, scale, "{:,.0f}")
        t.add_row(
            c,
            f"{int(g.counts[:, i].sum()):,}",
            f"{int(g.counts[i].sum()):,}",
            _pct(g.producers_accuracy[i]),
            _pct(g.users_accuracy[i]),
            _pct(g.f1[i]),
            _pct(g.iou[i]),
            _pct(s.weights[i]) if s is not None else "-",
            area,
        )
    lines = [
        "PA producer's accuracy (recall of the reference class), UA user's accuracy (precision of the map "
        "class), map % share of the map, area: area-weighted estimate",
        f"{a.units}: n = {g.n:,}; overall accuracy {_pct(g.overall_accuracy)} %, kappa {g.kappa:.3f}, "
        f"mIoU {_pct(g.mean_iou)} %, macro F1 {_pct(g.macro_f1)} %",
    ]
    if s is not None:
        lines.append(
            f"area-weighted overall accuracy {_pm(s.overall_accuracy, s.overall_accuracy_se, s.z)} % "
            f"({100 * s.confidence:g} % CI; Olofsson et al. 2014: assumes a probability sample)"
        )
    if ev.polygons is not None:
        pg = ev.polygons.agreement
        lines.append(
            f"polygons (majority of the map inside each): n = {pg.n}; overall accuracy "
            f"{_pct(pg.overall_accuracy)} %, kappa {pg.kappa:.3f}"
        )
    excluded = {**a.excluded, **(ev.polygons.excluded if ev.polygons is not None else {})}
    if excluded:
        lines.append("left out: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in excluded.items()))
    m = ev.match
    if m.unmatched_reference:
        how = "left out" if m.drop_unmatched else "counted as map errors"
        lines.append(f"reference classes the map does not have ({how}): {', '.join(m.unmatched_reference)}")
    if m.unmatched_map:
        lines.append(f"map classes with no reference class: {', '.join(m.unmatched_map)}")
    if s is not None and s.unsampled_weight > 0:
        lines.append(
            f"map classes without reference units: {100 * s.unsampled_weight:.1f} % of the map, outside the "
            "area estimates"
        )
    return Group(t, *(Text(line) for line in lines))
