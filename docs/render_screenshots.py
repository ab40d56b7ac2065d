"""Render the screenshots of docs/qgis.md with real QGIS, headless, from a real `geosam run`.

Run it with the system Python that has PyQGIS (not the venv, which has no QGIS)::

    /usr/bin/python3 docs/render_screenshots.py                       # everything, as needed
    /usr/bin/python3 docs/render_screenshots.py --run-dir demo_out    # render an existing run
    /usr/bin/python3 docs/render_screenshots.py --model geosam/data/default_model --force

What it does, each step skipped when its result is already there (``--force`` redoes them):

1. picks the model: ``--model``, else the packaged default model (``geosam/data/default_model``) when it
   exists, else it trains a small model on the Raleigh sample polygons with ``geosam train polygons``
   (``tiny`` backbone, about a minute on a CPU) into ``.cache/screenshots/raleigh_model``;
2. runs ``geosam run`` on ``sample_tiles/data/raleigh_landsat7_2000.vrt`` into
   ``.cache/screenshots/run`` (or uses ``--run-dir``);
3. opens the run's QGIS project (``<scene>.qgs``) in PyQGIS, with ``QT_QPA_PLATFORM=offscreen``, and
   renders each view as a print layout (``QgsPrintLayout``): a title, the map, QGIS's own legend
   (``QgsLayoutItemLegend``, sized to its labels, built from the project's layer tree so it shows what
   the Layers panel shows; the classes view lists every layer of the project) and a scale bar:
   ``docs/img/qgis_scene.png``, ``qgis_classes.png``, ``qgis_regions.png``, ``qgis_confidence.png``.
   Each PNG stays under 300 KB.

geosam itself runs in a subprocess of the venv's ``geosam`` (``--geosam``, default ``.venv/bin/geosam``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "sample_tiles" / "data" / "raleigh_landsat7_2000.vrt"
WORK = ROOT / ".cache" / "screenshots"
IMG = ROOT / "docs" / "img"
MAX_BYTES = 300_000

#: Map width in layout millimetres, page margin, export resolution (96 dpi: 1 mm = 3.8 px).
MAP_MM, MARGIN, DPI = 150.0, 4.0, 96


def log(msg: str) -> None:
    print(f"render_screenshots: {msg}", file=sys.stderr)


def geosam(exe: Path, *args: str) -> None:
    cmd = [str(exe), *args]
    log(" ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT)


def choose_model(args: argparse.Namespace) -> Path:
    if args.model is not None:
        return args.model.resolve()
    default = ROOT / "geosam" / "data" / "default_model"
    if (default / "model.json").is_file():
        return default
    model = WORK / "raleigh_model"
    if args.force or not (model / "model.json").is_file():
        log("no default model yet: training a small one on the Raleigh sample polygons")
        geosam(
            args.geosam, "-q", "train", "polygons",
            str(ROOT / "sample_tiles" / "data" / "landsat_multiband.tif"),
            str(ROOT / "sample_tiles" / "data" / "landsat96_polygons.shp"),
            "--class-column", "label", "--band-names", "blue,green,red,nir,swir1",
            "--chip-size", "16", "--spacing", "4", "--backbone", "tiny", "--epochs", "15",
            "--seed", "0", "--device", "cpu", "--name", "raleigh-tiny-demo", "--out", str(model),
        )  # fmt: skip
    return model


def prepare_run(args: argparse.Namespace) -> Path:
    """The folder holding a finished run on the sample scene (its QGIS project)."""
    if not SCENE.is_file():
        geosam_python = args.geosam.with_name("python")
        subprocess.run([str(geosam_python), str(ROOT / "sample_tiles" / "fetch.py"), "--quiet"], check=True)
    if args.run_dir is not None:
        return args.run_dir.resolve()
    model = choose_model(args)
    run = WORK / "run"
    record = run / f"{SCENE.stem}_run.json"
    stale = not record.is_file() or record.stat().st_mtime < (model / "model.json").stat().st_mtime
    if args.force or stale:
        geosam(args.geosam, "-q", "run", str(SCENE), "--model", str(model), "--out", str(run))
    return run


# -- rendering (PyQGIS) -----------------------------------------------------------------------------------


def render_all(run: Path, out_dir: Path) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # QGIS computes statistics/histograms when it draws a raster and GDAL would save them next to the
    # input (.aux.xml, or inside a VRT): never modify the user's (or sample_tiles') scenes.
    os.environ["GDAL_PAM_ENABLED"] = "NO"
    runtime = WORK / ".qgis-runtime"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    os.environ.setdefault("QGIS_CUSTOM_CONFIG_PATH", str(WORK / ".qgis-profile"))

    from qgis.core import QgsApplication, QgsProject

    app = QgsApplication([], False)
    app.setPrefixPath(os.environ.get("QGIS_PREFIX_PATH", "/usr"), True)
    app.initQgis()
    # GDAL_PAM_ENABLED does not cover VRTs: the VRT driver writes statistics into the .vrt file itself.
    vrts = {p: p.read_bytes() for p in SCENE.parent.glob("*.vrt")}
    try:
        return _render_views(run, out_dir)
    finally:
        # Layers and the project must be gone before exitQgis(), or QGIS crashes on exit.
        QgsProject.instance().clear()
        gc.collect()
        app.exitQgis()
        for vrt, content in vrts.items():  # datasets are closed (and flushed) by now
            if vrt.read_bytes() != content:
                vrt.write_bytes(content)


def _render_views(run: Path, out_dir: Path) -> list[Path]:
    from qgis.core import (
        QgsContrastEnhancement,
        QgsMultiBandColorRenderer,
        QgsProject,
        QgsRasterLayer,
        QgsRasterMinMaxOrigin,
        QgsRectangle,
    )

    project = QgsProject.instance()
    qgs = run / f"{SCENE.stem}.qgs"
    if not project.read(str(qgs)):
        raise SystemExit(f"QGIS could not read {qgs}")
    layers = {lyr.name(): lyr for lyr in project.mapLayers().values()}
    missing = {"classes", "confidence", "regions"} - set(layers)
    if missing:
        raise SystemExit(f"{qgs} lacks layers {sorted(missing)}")
    record = json.loads((run / f"{SCENE.stem}_run.json").read_text())
    crs = layers["classes"].crs()
    full = layers["classes"].extent()

    scene = QgsRasterLayer(str(SCENE), "scene (Landsat 7, bands red/green/blue)")
    rgb = QgsMultiBandColorRenderer(scene.dataProvider(), 3, 2, 1)
    scene.setRenderer(rgb)
    scene.setContrastEnhancement(
        QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut
    )

    # a zoomed view where region outlines are readable: the centre third of the scene
    cx, cy, w, h = full.center().x(), full.center().y(), full.width() / 3, full.height() / 3
    zoom = QgsRectangle(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    source = record.get("region_source", "?")
    model = record.get("model", {}).get("name", "?")
    views = [
        ("qgis_scene.png", [scene], full, [scene], "Input scene (natural colour)"),
        # the classes view lists the project's layers as the Layers panel does
        ("qgis_classes.png", [layers["classes"]], full, None, f"classes ({model})"),
        (
            "qgis_regions.png",
            [layers["regions"], layers["classes"]],
            zoom,
            [layers["regions"], layers["classes"]],
            f"regions ({source}) over classes, zoomed in",
        ),
        ("qgis_confidence.png", [layers["confidence"]], full, [layers["confidence"]], "confidence"),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, stack, extent, legend_layers, title in views:
        path = out_dir / name
        render(project, stack, extent, crs, legend_layers, title, path)
        written.append(path)
        log(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return written


def _legend_tree(project, legend_layers):
    """The legend's layer tree: the project's own nodes (their legend settings, e.g. no band header)."""
    from qgis.core import QgsLayerTree

    if legend_layers is None:
        return project.layerTreeRoot().clone()  # every layer, as the Layers panel shows them
    root = QgsLayerTree()
    for layer in legend_layers:
        node = project.layerTreeRoot().findLayer(layer.id())
        if node is not None:
            root.addChildNode(node.clone())
        else:  # the input scene, not part of the project
            root.addLayer(layer)
    return root


def _round_length(value: float) -> float:
    """The largest 1, 2, 2.5 or 5 x 10^k not above ``value`` (scale bar segment lengths)."""
    import math

    exp = 10 ** math.floor(math.log10(value))
    return max(f * exp for f in (1, 2, 2.5, 5) if f * exp <= value)


def render(project, stack, extent, crs, legend_layers, title: str, path: Path) -> None:
    """Render a print layout: title, map with frame, QGIS's own legend, and a scale bar."""
    from qgis.core import (
        QgsLayoutExporter,
        QgsLayoutItemLabel,
        QgsLayoutItemLegend,
        QgsLayoutItemMap,
        QgsLayoutItemScaleBar,
        QgsLayoutPoint,
        QgsLayoutSize,
        QgsPrintLayout,
        QgsUnitTypes,
    )
    from qgis.PyQt.QtGui import QFont

    mm = QgsUnitTypes.LayoutMillimeters
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    label = QgsLayoutItemLabel(layout)
    label.setText(title)
    label.setFont(QFont("DejaVu Sans", 11))
    label.attemptMove(QgsLayoutPoint(MARGIN, MARGIN, mm))
    label.attemptResize(QgsLayoutSize(MAP_MM, 8, mm))
    layout.addLayoutItem(label)
    ratio = extent.height() / extent.width()
    map_h = MAP_MM * ratio
    item = QgsLayoutItemMap(layout)
    item.attemptMove(QgsLayoutPoint(MARGIN, MARGIN + 9, mm))
    item.attemptResize(QgsLayoutSize(MAP_MM, map_h, mm))
    item.setLayers(stack)
    item.setCrs(crs)
    item.setExtent(extent)
    item.setFrameEnabled(True)
    layout.addLayoutItem(item)
    scalebar = QgsLayoutItemScaleBar(layout)
    scalebar.setLinkedMap(item)
    scalebar.setStyle("Single Box")
    scalebar.applyDefaultSize(QgsUnitTypes.DistanceKilometers)
    # two segments of a round length of about 25 mm each, so the labels never overlap
    metres = QgsUnitTypes.fromUnitToUnitFactor(crs.mapUnits(), QgsUnitTypes.DistanceMeters)
    km_per_mm = extent.width() * metres / 1000 / MAP_MM
    scalebar.setUnitsPerSegment(_round_length(25 * km_per_mm))
    scalebar.setNumberOfSegments(2)
    scalebar.setNumberOfSegmentsLeft(0)
    scalebar.attemptMove(QgsLayoutPoint(MARGIN, MARGIN + 11 + map_h, mm))
    layout.addLayoutItem(scalebar)
    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Layers")
    legend.setLinkedMap(item)
    legend.setAutoUpdateModel(False)
    tree = _legend_tree(project, legend_layers)
    legend.model().setRootGroup(tree)
    legend.setResizeToContents(True)
    legend.attemptMove(QgsLayoutPoint(MARGIN + MAP_MM + 4, MARGIN + 9, mm))
    layout.addLayoutItem(legend)
    exporter = QgsLayoutExporter(layout)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = DPI
    settings.generateWorldFile = False
    settings.exportMetadata = False
    page = layout.pageCollection().page(0)
    # QGIS sizes a legend to its contents only once it has been drawn: draw on a wide page first,
    # then fit the page to the map, the legend and the scale bar
    page.setPageSize(QgsLayoutSize(MAP_MM + 200, 2 * MAP_MM, mm))
    exporter.renderPageToImage(0)
    legend.adjustBoxSize()
    width = MARGIN + MAP_MM + 4 + legend.sizeWithUnits().width() + MARGIN
    height = max(MARGIN + 11 + map_h + scalebar.sizeWithUnits().height(), legend.sizeWithUnits().height() + 9)
    page.setPageSize(QgsLayoutSize(width, height + MARGIN, mm))
    if exporter.exportToImage(str(path), settings) != QgsLayoutExporter.Success:
        raise SystemExit(f"could not write {path}")
    del exporter, layout, tree
    if path.stat().st_size > MAX_BYTES:  # natural-colour imagery: fall back to a 256-colour palette
        from qgis.PyQt.QtCore import Qt
        from qgis.PyQt.QtGui import QImage

        flags = Qt.ThresholdDither | Qt.AvoidDither  # dithering would speckle the white page
        QImage(str(path)).convertToFormat(QImage.Format_Indexed8, flags).save(str(path), "PNG")
    if path.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{path} is {path.stat().st_size} bytes, over {MAX_BYTES}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, help="render this finished run (e.g. demo_out) instead")
    ap.add_argument("--model", type=Path, help="model bundle for the run (default: see above)")
    ap.add_argument("--geosam", type=Path, default=ROOT / ".venv" / "bin" / "geosam")
    ap.add_argument("--out", type=Path, default=IMG, help="where the PNGs go (default docs/img)")
    ap.add_argument("--force", action="store_true", help="retrain/rerun even when results exist")
    args = ap.parse_args(argv)
    run = prepare_run(args)
    render_all(run, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
