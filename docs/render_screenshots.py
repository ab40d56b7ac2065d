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
   renders each view with ``QgsMapRendererCustomPainterJob``, drawing a legend from the layers' own
   renderers: ``docs/img/qgis_scene.png``, ``qgis_classes.png``, ``qgis_regions.png``,
   ``qgis_confidence.png``. Each PNG stays under 300 KB.

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

MAP_W, MAP_H, LEGEND_W = 640, 580, 200


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
        ("qgis_scene.png", [scene], full, None, "Input scene (natural colour)"),
        ("qgis_classes.png", [layers["classes"]], full, layers["classes"], f"classes ({model})"),
        (
            "qgis_regions.png",
            [layers["regions"], layers["classes"]],
            zoom,
            layers["regions"],
            f"regions ({source}) over classes",
        ),
        ("qgis_confidence.png", [layers["confidence"]], full, layers["confidence"], "confidence"),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, stack, extent, legend_layer, title in views:
        path = out_dir / name
        render(stack, extent, crs, legend_layer, title, path)
        written.append(path)
        log(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return written


def legend_items(layer) -> list[tuple[str, object]]:
    """(label, QColor) pairs from the layer's own renderer, as QGIS's legend shows them."""
    from qgis.core import QgsRasterLayer

    if isinstance(layer, QgsRasterLayer):
        return [(label, color) for label, color in layer.renderer().legendSymbologyItems()]
    renderer = layer.renderer()
    return [(cat.label(), cat.symbol().color()) for cat in renderer.categories()]


def render(stack, extent, crs, legend_layer, title: str, path: Path) -> None:
    from qgis.core import QgsMapRendererCustomPainterJob, QgsMapSettings
    from qgis.PyQt.QtCore import QRectF, QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen

    settings = QgsMapSettings()
    settings.setLayers(stack)
    settings.setDestinationCrs(crs)
    settings.setOutputSize(QSize(MAP_W, MAP_H))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor(255, 255, 255))
    settings.setOutputDpi(96)
    width = MAP_W + (LEGEND_W if legend_layer is not None else 0)
    image = QImage(width, MAP_H, QImage.Format_ARGB32)
    image.fill(QColor(255, 255, 255))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    painter.setClipRect(0, 0, MAP_W, MAP_H)  # vector layers would draw past the map into the legend
    job = QgsMapRendererCustomPainterJob(settings, painter)
    job.renderSynchronously()
    painter.setClipping(False)
    # the real map extent (QGIS keeps the aspect ratio) for the frame
    painter.setPen(QPen(QColor(80, 80, 80), 1))
    painter.drawRect(0, 0, MAP_W - 1, MAP_H - 1)
    font = QFont("DejaVu Sans", 10)
    painter.setFont(font)
    text_w = QFontMetrics(font).horizontalAdvance(title)
    painter.fillRect(QRectF(6, 6, text_w + 14, 22), QColor(255, 255, 255, 220))
    painter.setPen(QColor(20, 20, 20))
    painter.drawText(QRectF(12, 6, text_w + 4, 22), Qt.AlignVCenter, title)
    if legend_layer is not None:
        x0, y = MAP_W + 14, 16
        painter.setFont(QFont("DejaVu Sans", 10, QFont.Bold))
        painter.drawText(QRectF(x0, y, LEGEND_W - 20, 20), Qt.AlignVCenter, legend_layer.name())
        painter.setFont(font)
        y += 28
        for label, color in legend_items(legend_layer):
            painter.fillRect(QRectF(x0, y + 2, 18, 14), color)
            painter.setPen(QColor(60, 60, 60))
            painter.drawRect(QRectF(x0, y + 2, 18, 14))
            painter.setPen(QColor(20, 20, 20))
            painter.drawText(QRectF(x0 + 26, y, LEGEND_W - 44, 18), Qt.AlignVCenter, str(label))
            y += 22
    painter.end()
    if not image.save(str(path), "PNG"):
        raise SystemExit(f"could not write {path}")
    if path.stat().st_size > MAX_BYTES:  # natural-colour imagery: fall back to a 256-colour palette
        image.convertToFormat(QImage.Format_Indexed8).save(str(path), "PNG")
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
