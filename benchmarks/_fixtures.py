"""Models, configurations and scenes the benchmarks run on.

No real SAM weights exist on the benchmark machine, so the SAM set-up uses an architecture-identical
**random-weight** ViT-B (Meta's ``vit_b``: 12 blocks, width 768, 1024 px input, the same mask
decoder) and a head-only "probe" bundle on its frozen encoder. Random weights make the masks and
classes meaningless, but every FLOP, buffer and code path is that of a run with
``sam_vit_b_01ec64.pth``. The SAM thresholds are lowered to 0 so that random masks are kept (real
weights with the defaults keep a similar number: tens to a few hundred masks per 1024 px tile).

The default-model set-up uses the packaged default model when it exists (``geosam/data/default_model``,
or the training run's output folder), else a random bundle of the same architecture (``small``
encoder, 64 px chips, 256 px tiles, 10 EuroSAT classes).

``size="smoke"`` swaps in geosam's ``tiny`` test models and small synthetic scenes (seconds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from _harness import ROOT

from geosam.train.data import EUROSAT_CLASSES

WORK = Path(os.environ.get("GEOSAM_BENCH_WORK", "/tmp/geosam-bench"))
SHARED = Path(os.environ.get("GEOSAM_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: Where the trained default model may be (the packaged one first).
DEFAULT_MODEL_CANDIDATES = (ROOT / "geosam" / "data" / "default_model",)


@dataclass(frozen=True)
class Setup:
    """A model set-up: what ``load_models`` gets, and a one-line description for the results."""

    name: str
    model: Path | None
    sam_checkpoint: Path | None
    cfg: Any  # geosam.config.RunConfig
    note: str

    def load(self, **cfg_overrides: Any) -> Any:
        """``geosam.runtime.load_models`` for this set-up (``cfg_overrides``: dotted RunConfig paths)."""
        from geosam.runtime import load_models

        cfg = self.cfg.with_overrides(**cfg_overrides) if cfg_overrides else self.cfg
        return load_models(self.model, self.sam_checkpoint, cfg)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name,
            "model": str(self.model) if self.model else None,
            "sam_checkpoint": str(self.sam_checkpoint) if self.sam_checkpoint else None,
            "note": self.note,
            "config": self.cfg.to_json_dict(),
        }


def work_dir(work: str | os.PathLike[str] | None = None) -> Path:
    """The scratch folder (created)."""
    p = Path(work) if work is not None else WORK
    p.mkdir(parents=True, exist_ok=True)
    return p


def random_sam_checkpoint(work: Path, preset: str, img_size: int | None = None, seed: int = 0) -> Path:
    """A random-weight SAM checkpoint of ``preset`` in Meta's format (cached in ``work``)."""
    import torch

    from geosam.models.sam import build_sam, save_sam
    from geosam.models.sam_config import SamConfig

    cfg = SamConfig.preset(preset) if img_size is None else SamConfig.preset(preset, img_size=img_size)
    path = work / f"sam_{preset}_{cfg.img_size}_random{seed}.pth"
    if not path.is_file():
        torch.manual_seed(seed)
        save_sam(build_sam(cfg), path)
    return path


def probe_bundle(work: Path, checkpoint: Path, tile_size: int) -> Path:
    """A head-only bundle (10 EuroSAT classes, RGB) on ``checkpoint``'s frozen encoder (cached)."""
    from geosam.testing_models import make_tiny_bundle

    path = work / f"probe_{checkpoint.stem}"
    if not (path / "model.json").is_file():
        make_tiny_bundle(path, classes=EUROSAT_CLASSES, sam_checkpoint=checkpoint, tile_size=tile_size)
    return path


def sam_config(size: str, **segment: Any) -> Any:
    """RunConfig of the SAM set-up: SAM regions, thresholds 0 (random weights), 8 points per side.

    8 x 8 = 64 prompts (one decoder batch) instead of SAM's 32 x 32: on 2 CPU cores the automatic mask
    generator's decoding and post-processing of 1,024 prompts at 1024 px takes minutes per tile. Its
    cost grows with the number of prompts; the encoder's does not.
    """
    from geosam.config import RunConfig

    tile = 128 if size == "smoke" else 1024
    seg = {
        "source": "sam",
        "points_per_side": 3 if size == "smoke" else 8,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        **segment,
    }
    return RunConfig.model_validate({"tiling": {"tile_size": tile}, "segment": seg})


def sam_setup(size: str, work: Path, **segment: Any) -> Setup:
    """ViT-B (random weights) at 1024 px with a probe bundle; ``tiny`` at 128 px for smoke runs."""
    if size == "smoke":
        ckpt = random_sam_checkpoint(work, "tiny", img_size=128)
        bundle = probe_bundle(work, ckpt, 128)
        note = "tiny SAM (random weights), 128 px tiles (smoke)"
    else:
        ckpt = random_sam_checkpoint(work, "vit_b")
        bundle = probe_bundle(work, ckpt, 1024)
        note = (
            "SAM ViT-B architecture (Meta's vit_b) with RANDOM weights at 1024 px + probe head; "
            "masks and classes are meaningless, compute is identical to sam_vit_b_01ec64.pth"
        )
    cfg = sam_config(size, **segment)
    return Setup("sam_vit_b" if size != "smoke" else "sam_tiny", bundle, ckpt, cfg, note)


def trained_default_model() -> Path | None:
    """The trained default model bundle if one exists on this machine."""
    for p in DEFAULT_MODEL_CANDIDATES:
        if (p / "model.json").is_file() and (p / "weights.safetensors").is_file():
            return p
    return None


def random_default_like_bundle(work: Path) -> Path:
    """A random bundle with the default model's architecture: ``small`` encoder, 64 px chips, 256 px tiles."""
    import torch

    from geosam.models.bundle import BundleMeta, EncoderMeta, HeadMeta, save_bundle
    from geosam.models.classifier import ClassifierHead, LandCoverModel
    from geosam.models.sam import build_encoder
    from geosam.models.sam_config import SamConfig

    path = work / "default_like_random"
    if (path / "model.json").is_file():
        return path
    torch.manual_seed(0)
    cfg = SamConfig.preset("small")
    model = LandCoverModel(
        build_encoder(cfg), ClassifierHead(cfg.out_chans, len(EUROSAT_CLASSES)), [0.4] * 3, [0.2] * 3
    )
    meta = BundleMeta(
        name="default-like-random",
        classes={"names": list(EUROSAT_CLASSES)},
        bands=["red", "green", "blue"],
        mean=[0.4] * 3,
        std=[0.2] * 3,
        input_size=cfg.img_size,
        recommended_tile_size=256,
        encoder=EncoderMeta(source="bundle", config=cfg.to_dict()),
        head=HeadMeta(in_dim=cfg.out_chans, num_classes=len(EUROSAT_CLASSES)),
        data={"note": "random weights with the default model's architecture (benchmarks)"},
    )
    save_bundle(path, model, meta)
    return path


def default_setup(size: str, work: Path) -> Setup:
    """The default model (felzenszwalb regions, as ``geosam run scene.tif`` does without a checkpoint).

    Resolution matching is off: the benchmark scenes are 300 m (``RGB.byte.tif``) and 1 m (NAIP), which
    would be encoded in 4 px and 640 px chips; the benchmarks measure the model's own 64 px chips in
    256 px tiles, so seconds per tile and per pixel compare across scenes.
    """
    from geosam.config import RunConfig

    if size == "smoke":
        from geosam.testing_models import make_tiny_bundle

        path = work / "tiny_bundle_32"
        if not (path / "model.json").is_file():
            make_tiny_bundle(path, classes=EUROSAT_CLASSES, input_size=32, tile_size=128)
        return Setup(
            "tiny",
            path,
            None,
            RunConfig(match_resolution=False),
            "tiny random bundle, 32 px chips, 128 px tiles (smoke)",
        )
    trained = trained_default_model()
    if trained is not None:
        return Setup(
            "default_model",
            trained,
            None,
            RunConfig(match_resolution=False),
            f"trained default model ({trained}), felzenszwalb regions",
        )
    return Setup(
        "default_like_random",
        random_default_like_bundle(work),
        None,
        RunConfig(match_resolution=False),
        "random bundle with the default model's architecture (small encoder, 64 px chips, 256 px tiles); "
        "felzenszwalb regions",
    )


def dense_setup(size: str, work: Path) -> Setup:
    """A dense-head bundle (per-pixel classes and the probability COG; felzenszwalb regions refined by it).

    Untrained head weights on the packaged encoder (``small``, 16 px chips at 64 px input, 256 px
    tiles): the compute and the memory are what a trained ``--head dense`` model costs. Smoke runs use
    the ``tiny`` encoder. Resolution matching is off, as for :func:`default_setup`.
    """
    from geosam.config import RunConfig
    from geosam.testing_models import make_dense_bundle

    backbone = "tiny" if size == "smoke" else "default"
    path = work / f"dense_bundle_{backbone}"
    if not (path / "model.json").is_file():
        make_dense_bundle(
            path, classes=EUROSAT_CLASSES, backbone=backbone, tile_size=128 if size == "smoke" else 256
        )
    cfg = RunConfig(match_resolution=False).with_overrides(**{"dense.probabilities": True})
    return Setup(
        f"dense_{backbone}",
        path,
        None,
        cfg,
        f"dense head (untrained) on the {backbone} encoder, 16 px chips, probability COG written",
    )


# -- scenes -----------------------------------------------------------------------------------------


def synthetic_scene(work: Path, width: int = 150, height: int = 90, seed: int = 0) -> Path:
    """A small 3-band uint8 RGB scene with smooth structure and a nodata corner (smoke runs)."""
    import numpy as np

    from geosam.testing import make_raster

    path = work / f"synthetic_{width}x{height}_{seed}.tif"
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            120 + 60 * np.sin(xx / 23.0 + k) * np.cos(yy / 31.0 - k) + rng.normal(0, 8, (height, width))
            for k in range(3)
        ]
    )
    data = np.clip(base, 1, 255).astype(np.uint8)
    nodata = (xx + yy) < 30
    return make_raster(
        path,
        width,
        height,
        count=3,
        dtype="uint8",
        nodata=0,
        fill=data,
        nodata_where=nodata,
        colorinterp=["red", "green", "blue"],
    )


def real_scenes() -> list[tuple[Path, list[int] | None]]:
    """Real scenes of ``../shared/data`` with the band indices to use (``None``: automatic)."""
    out: list[tuple[Path, list[int] | None]] = []
    rgb = SHARED / "scenes" / "rasterio" / "RGB.byte.tif"
    naip = SHARED / "scenes" / "naip" / "m_4709963_se_14_1_20190904.tif"
    if rgb.is_file():
        out.append((rgb, None))
    if naip.is_file():
        out.append((naip, [1, 2, 3]))
    return out


def bench_scenes(size: str, work: Path) -> list[tuple[Path, list[int] | None]]:
    """Scenes for a benchmark: the real ones (full) or a synthetic one (smoke, or no shared data)."""
    if size == "smoke":
        return [(synthetic_scene(work), None)]
    scenes = real_scenes()
    if not scenes:
        print(f"note: no real scenes under {SHARED}; using a synthetic scene")
        return [(synthetic_scene(work, 791, 718), None)]
    return scenes


def mosaic_vrt(path: Path, source: Path, nx: int, ny: int) -> Path:
    """A VRT tiling ``source`` ``nx`` x ``ny`` times (``nx * ny`` times its area; only metadata is written).

    The copies sit side by side at the source's resolution, so every pixel is real imagery and a read
    costs what reading such a scene costs; nodata and colour interpretation are kept.
    """
    import rasterio

    src = Path(source).resolve()
    with rasterio.open(src) as ds:
        w, h = ds.width, ds.height
        t = ds.transform
        wkt = ds.crs.to_wkt() if ds.crs else ""
        bands = []
        for b in range(1, ds.count + 1):
            dtype = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}[
                ds.dtypes[b - 1]
            ]
            nd = ds.nodatavals[b - 1]
            nd_xml = f"<NoDataValue>{nd!r}</NoDataValue>" if nd is not None else ""
            ci = ds.colorinterp[b - 1].name.capitalize()
            sources = "".join(
                f"<SimpleSource><SourceFilename>{escape(str(src))}</SourceFilename><SourceBand>{b}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                f'<DstRect xOff="{i * w}" yOff="{j * h}" xSize="{w}" ySize="{h}"/></SimpleSource>'
                for j in range(ny)
                for i in range(nx)
            )
            bands.append(
                f'<VRTRasterBand dataType="{dtype}" band="{b}">{nd_xml}'
                f"<ColorInterp>{ci}</ColorInterp>{sources}</VRTRasterBand>"
            )
    gt = (t.c, t.a, t.b, t.f, t.d, t.e)
    xml = (
        f'<VRTDataset rasterXSize="{w * nx}" rasterYSize="{h * ny}"><SRS>{escape(wkt)}</SRS>'
        f"<GeoTransform>{', '.join(repr(float(v)) for v in gt)}</GeoTransform>"
        + "".join(bands)
        + "</VRTDataset>"
    )
    path.write_text(xml, encoding="utf-8")
    return path


def scene_tiles(
    scene: Path, bands: list[int] | None, models: Any, cfg: Any, limit: int | None = None
) -> list[tuple[Any, Any, Any]]:
    """``(spec, stretched data, valid)`` of the first ``limit`` tiles, read as ``predict_scene`` reads."""
    from geosam.bands import resolve_bands
    from geosam.io.read import open_scene, read_tile
    from geosam.preprocess import model_preprocessing
    from geosam.scene_preprocessing import scene_preprocessing
    from geosam.tiling import plan_tiles

    run_cfg = cfg.with_overrides(bands=bands) if bands else cfg
    info = open_scene(str(scene))
    meta = models.bundle.meta
    b = resolve_bands(info, run_cfg.bands, meta.bands)
    prep = scene_preprocessing(
        str(scene), b, model_preprocessing(meta), meta.mean, run_cfg.normalize, info=info
    )
    tiling = run_cfg.tiling.model_copy(update={"tile_size": models.tile_size}).resolved(models.tile_size)
    out = []
    for spec in plan_tiles(info, tiling).tiles[:limit]:
        tile = read_tile(str(scene), spec, b)
        out.append((spec, prep.apply(tile.data, tile.valid), tile.valid))
    return out
