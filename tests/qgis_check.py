"""Load geosam outputs in real QGIS and check them; print a JSON report.

Standalone: runs under the *system* Python that has PyQGIS, not geosam's venv, and imports only the
standard library and ``qgis``::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_check.py spec.json [--out result.json]

The spec (JSON) lists layers to load one by one, and optionally ``.qgs`` projects to open; relative paths
are relative to the spec file's directory::

    {
      "layers": [
        {"path": "x_classes.tif", "kind": "raster", "style": "default",
         "expect": {"crs": "EPSG:32633", "renderer": "paletted", "legend": ["water", "forest"],
                    "colors": ["#1f78b4", "#33a02c"], "style_loaded": true}},
        {"path": "x_regions.gpkg", "kind": "vector", "layer": "regions",
         "expect": {"feature_count": 12, "renderer": "categorizedSymbol", "geometry": "Polygon"}}
      ],
      "projects": [
        {"path": "x.qgs", "expect": {"crs": "EPSG:32633", "layer_count": 3,
                                     "layers": {"x classes": {"renderer": "paletted", "legend": ["water"]}}}}
      ]
    }

``style`` is ``"default"`` (QGIS's own lookup of ``<basename>.qml``, the default), a ``.qml`` path, or
``"none"``. Every layer must be valid; each key of ``expect`` must equal what QGIS reports:

* ``crs`` (authid), ``renderer`` (renderer type: ``paletted``, ``singlebandpseudocolor``,
  ``categorizedSymbol``, ``singleSymbol``...), ``legend`` (legend labels in order), ``colors`` (legend
  colours ``#rrggbb``), ``style_loaded`` (the style load reported success), ``feature_count``,
  ``band_count``, ``band_names`` (raster band names as QGIS lists them, ``Band 1: <description>``),
  ``fields`` (attribute names in order), ``geometry`` (``Polygon``, ``Line``, ``Point``, ``No geometry``,
  ``Unknown geometry``), ``labels_field`` (field of simple labelling, ``null`` when labels are off),
  ``labels_display_all`` and ``labels_fit_in_polygon`` (when labels are on),
  ``opacity``.
* for projects also ``crs`` of the project, ``layer_count``, ``tree`` (layer names top to bottom),
  ``extent`` (default view ``[xmin, ymin, xmax, ymax]``), and ``layers`` keyed by layer name (their
  expectations may also use ``visible`` and ``panel_legend``: the legend nodes' texts as the Layers
  panel shows them, after the layer tree's node order and custom labels).

The report has ``ok`` and, per layer/project, what QGIS reported plus a ``failures`` list. Exit status:
0 all checks passed, 1 some check failed, 2 bad spec or QGIS could not start.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any


def _legend(layer: Any) -> tuple[list[str], list[str]]:
    """Legend labels and colours as QGIS shows them."""
    from qgis.core import QgsMapLayerType

    renderer = layer.renderer()
    if renderer is None:
        return [], []
    if layer.type() == QgsMapLayerType.RasterLayer:
        rtype = renderer.type()
        if rtype == "paletted":
            classes = renderer.classes()
            return [c.label for c in classes], [c.color.name() for c in classes]
        if rtype == "singlebandpseudocolor":
            shader = renderer.shader()
            fn = shader.rasterShaderFunction() if shader is not None else None
            items = fn.colorRampItemList() if fn is not None else []
            return [i.label for i in items], [i.color.name() for i in items]
        items = renderer.legendSymbologyItems()
        return [label for label, _ in items], [color.name() for _, color in items]
    rtype = renderer.type()
    if rtype == "categorizedSymbol":
        cats = renderer.categories()
        return [c.label() for c in cats], [c.symbol().color().name() for c in cats]
    items = renderer.legendSymbolItems()
    labels = [i.label() for i in items]
    colors = [i.symbol().color().name() if i.symbol() is not None else "" for i in items]
    return labels, colors


def _describe(layer: Any) -> dict[str, Any]:
    from qgis.core import QgsMapLayerType, QgsWkbTypes

    info: dict[str, Any] = {"valid": bool(layer.isValid()), "name": layer.name()}
    if not layer.isValid():
        return info
    info["crs"] = layer.crs().authid()
    renderer = layer.renderer()
    info["renderer"] = renderer.type() if renderer is not None else None
    info["legend"], info["colors"] = _legend(layer)
    info["source"] = layer.source()
    if layer.type() == QgsMapLayerType.RasterLayer:
        info["band_count"] = layer.bandCount()
        # "Band 1: <description>" as the layer properties show it
        info["band_names"] = [layer.bandName(b) for b in range(1, layer.bandCount() + 1)]
        info["opacity"] = round(float(renderer.opacity()), 4) if renderer is not None else None
    else:
        info["feature_count"] = int(layer.featureCount())
        info["fields"] = [f.name() for f in layer.fields()]
        info["geometry"] = QgsWkbTypes.geometryDisplayString(layer.geometryType())
        labeling = layer.labeling()
        if layer.labelsEnabled() and labeling is not None and labeling.type() == "simple":
            settings = labeling.settings()
            info["labels_field"] = settings.fieldName
            info["labels_display_all"] = bool(settings.displayAll)
            info["labels_fit_in_polygon"] = bool(settings.fitInPolygonOnly)
        else:
            info["labels_field"] = None
        info["opacity"] = round(float(layer.opacity()), 4)
    return info


def _compare(info: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    failures = []
    if not info.get("valid"):
        return ["layer is not valid (QGIS could not open it)"]
    for key, want in expect.items():
        got = info.get(key, "<not reported>")
        if key in ("legend", "colors", "fields", "band_names") and want is not None:
            want = list(want)
        if got != want:
            failures.append(f"{key}: expected {want!r}, QGIS reports {got!r}")
    return failures


def _resolve(base: Path, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else (base / p))


def _check_layer(spec: dict[str, Any], base: Path, keep: list[Any]) -> dict[str, Any]:
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    path = _resolve(base, spec["path"])
    kind = spec.get("kind", "raster")
    name = spec.get("name") or Path(path).stem
    if kind == "raster":
        layer = QgsRasterLayer(path, name, spec.get("provider", "gdal"))
    elif kind == "vector":
        uri = path + (f"|layername={spec['layer']}" if spec.get("layer") else "")
        layer = QgsVectorLayer(uri, name, spec.get("provider", "ogr"))
    else:
        raise ValueError(f"layer kind must be 'raster' or 'vector', not {kind!r}")
    keep.append(layer)
    result: dict[str, Any] = {"path": path, "kind": kind}
    style = spec.get("style", "default")
    if layer.isValid() and style != "none":
        if style == "default":
            message, ok = layer.loadDefaultStyle()
        else:
            message, ok = layer.loadNamedStyle(_resolve(base, style))
        result["style_loaded"], result["style_message"] = bool(ok), message
    result.update(_describe(layer))
    result["failures"] = _compare(result, spec.get("expect", {}))
    return result


def _check_project(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    from qgis.core import QgsProject

    path = _resolve(base, spec["path"])
    project = QgsProject.instance()
    result: dict[str, Any] = {"path": path, "read": bool(project.read(path))}
    expect = dict(spec.get("expect", {}))
    failures = [] if result["read"] else [f"QgsProject.read() failed: {project.error()}"]
    layers = list(project.mapLayers().values())
    result["crs"] = project.crs().authid()
    result["layer_count"] = len(layers)
    tree = project.layerTreeRoot()
    result["tree"] = [node.name() for node in tree.findLayers()]
    view = project.viewSettings().defaultViewExtent()
    result["extent"] = (
        None if view.isNull() else [view.xMinimum(), view.yMinimum(), view.xMaximum(), view.yMaximum()]
    )
    result["layers"] = {}
    from qgis.core import QgsLayerTreeModel
    from qgis.PyQt.QtCore import Qt

    model = QgsLayerTreeModel(tree)
    for layer in layers:
        info = _describe(layer)
        node = tree.findLayer(layer.id())
        info["visible"] = bool(node.itemVisibilityChecked()) if node is not None else None
        # the legend as the Layers panel shows it (node order and custom labels of the layer tree)
        nodes = model.layerLegendNodes(node) if node is not None else []
        texts = [n.data(Qt.DisplayRole) for n in nodes]
        info["panel_legend"] = [t if isinstance(t, str) else None for t in texts]  # a ramp has no text
        result["layers"][layer.name()] = info
        if not info["valid"]:
            failures.append(f"layer {layer.name()!r} is not valid (source {layer.source()!r})")
    layer_expect = expect.pop("layers", {})
    for key, want in expect.items():
        if result.get(key) != want:
            failures.append(f"{key}: expected {want!r}, QGIS reports {result.get(key)!r}")
    for name, want in layer_expect.items():
        info = result["layers"].get(name)
        if info is None:
            failures.append(f"layer {name!r} missing; project has {sorted(result['layers'])}")
            continue
        failures += [f"layer {name!r}: {f}" for f in _compare(info, want)]
    result["failures"] = failures
    del layers, model
    project.clear()
    return result


def run(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    """Start QGIS, run every check of ``spec`` and return the report (QGIS is shut down again)."""
    from qgis.core import Qgis, QgsApplication, QgsProject

    app = QgsApplication([], False)
    app.setPrefixPath(os.environ.get("QGIS_PREFIX_PATH", "/usr"), True)
    app.initQgis()
    log: list[str] = []

    def _on_message(message: str, tag: str, level: Any) -> None:
        log.append(f"[{tag}] {message}")

    QgsApplication.messageLog().messageReceived.connect(_on_message)
    keep: list[Any] = []
    report: dict[str, Any] = {"qgis_version": Qgis.version(), "layers": [], "projects": []}
    try:
        for layer_spec in spec.get("layers", []):
            report["layers"].append(_check_layer(layer_spec, base, keep))
        for project_spec in spec.get("projects", []):
            report["projects"].append(_check_project(project_spec, base))
    finally:
        # Layers and the project must be gone before exitQgis(), or QGIS crashes on exit.
        keep.clear()
        QgsProject.instance().clear()
        gc.collect()
        report["log"] = log[-50:]
        app.exitQgis()
    entries = report["layers"] + report["projects"]
    report["ok"] = all(not e["failures"] for e in entries)
    return report


def main(argv: list[str]) -> int:
    """Command-line entry point; returns the exit status."""
    args = [a for a in argv if a != "--out"]
    out = None
    if "--out" in argv:
        i = argv.index("--out")
        if i + 1 >= len(argv):
            print("usage: qgis_check.py spec.json [--out result.json]", file=sys.stderr)
            return 2
        out = argv[i + 1]
        args.remove(out)
    if len(args) != 1:
        print("usage: qgis_check.py spec.json [--out result.json]", file=sys.stderr)
        return 2
    spec_path = Path(args[0]).resolve()
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{spec_path}: cannot read spec: {exc}", file=sys.stderr)
        return 2
    try:
        report = run(spec, spec_path.parent)
    except ImportError as exc:
        print(f"PyQGIS is not available to {sys.executable}: {exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError, TypeError) as exc:
        print(f"{spec_path}: bad spec: {exc!r}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2, sort_keys=True)
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
