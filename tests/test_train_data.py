"""Chips sampled from a scene with label polygons or a label raster (geosam.train.scene_chips).

The synthetic scene encodes each pixel's position (band 1 = col + 1, band 2 = row + 1) and its side
(band 3: 1000 on the left half, 60000 on the right half), so every chip tells where its centre is and
which region it comes from. With ``normalize.method = "dtype"`` and float32 chips, ``value * 65535``
recovers the raw values exactly.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import Point, Polygon, box

from geosam.config import NormalizeConfig
from geosam.errors import DataError
from geosam.testing import DEFAULT_TRANSFORM, make_raster
from geosam.train.data import stratified_split
from geosam.train.scene_chips import polygon_chips, raster_chips

SIZE = 128
CHIP = 16
T = Affine(*DEFAULT_TRANSFORM)  # 10 m pixels, EPSG:32633
DTYPE_STRETCH = NormalizeConfig(method="dtype")
LEFT, RIGHT = 1000, 60000


def _scene_array() -> np.ndarray:
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    side = np.where(cols < SIZE // 2, LEFT, RIGHT)
    return np.stack([cols + 1, rows + 1, side]).astype(np.uint16)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return make_raster(tmp_path / "scene.tif", SIZE, SIZE, count=3, dtype="uint16", fill=_scene_array())


def _px_box(c0: float, r0: float, c1: float, r1: float):
    """A rectangle given in scene pixel coordinates, returned in map coordinates."""
    (x0, y0), (x1, y1) = T @ (c0, r0), T @ (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _px_triangle(*corners: tuple[float, float]) -> Polygon:
    """A triangle given by (col, row) pixel corners, returned in map coordinates."""
    return Polygon([T @ c for c in corners])


@pytest.fixture
def polygons() -> gpd.GeoDataFrame:
    geoms = [
        _px_box(4, 4, 30, 40),  # dark (left half)
        _px_box(34, 4, 60, 40),
        _px_triangle((4, 70), (60, 70), (4, 124)),
        _px_box(40.6, 55.6, 41.4, 56.4),  # dark, 0.8 px: no pixel centre inside
        _px_box(68, 4, 124, 40),  # bright (right half)
        _px_box(68, 60, 94, 124),
        _px_box(98, 60, 124, 124),
    ]
    names = ["dark"] * 4 + ["bright"] * 3
    return gpd.GeoDataFrame({"landcover": names, "note": ["x"] * 7}, geometry=geoms, crs="EPSG:32633")


def _centres(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of each chip's centre pixel, decoded from the coordinate bands."""
    h = images.shape[-1] // 2
    cols = np.rint(images[:, 0, h, h].astype(np.float64) * 65535).astype(int) - 1
    rows = np.rint(images[:, 1, h, h].astype(np.float64) * 65535).astype(int) - 1
    return rows, cols


def _pixel_centre(row: int, col: int) -> Point:
    return Point(*(T @ (col + 0.5, row + 0.5)))


def test_polygon_chips_come_from_their_polygon(
    scene: Path, polygons: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "labels.gpkg"
    polygons.to_file(path)
    data = polygon_chips(
        scene,
        path,
        class_column="landcover",
        chip_size=CHIP,
        spacing=4,
        normalize=DTYPE_STRETCH,
        dtype="float32",
        max_per_polygon=None,
    )
    assert data.classes == ("bright", "dark")  # sorted class names
    assert data.images.shape[1:] == (3, CHIP, CHIP) and data.images.dtype == np.float32
    assert data.low.tolist() == [0, 0, 0] and data.high.tolist() == [1, 1, 1]
    assert data.gsd_m == 10.0
    rows, cols = _centres(data.images)
    for i in range(len(data.labels)):
        poly = polygons.iloc[int(data.groups[i])]
        # the group is the polygon the chip was sampled from, its label that polygon's class ...
        assert data.classes[data.labels[i]] == poly.landcover
        # ... and the centre pixel's centre lies inside it (the 0.8 px polygon: its pixel covers it)
        if data.groups[i] == 3:
            assert poly.geometry.intersects(_pixel_centre(rows[i], cols[i]).buffer(7.1))
        else:
            assert poly.geometry.contains(_pixel_centre(rows[i], cols[i]))
    # the regions look different: band 3 is LEFT on dark chips and RIGHT on bright ones
    h = CHIP // 2
    side = np.rint(data.images[:, 2, h, h] * 65535)
    assert set(side[data.labels == data.classes.index("dark")]) == {LEFT}
    assert set(side[data.labels == data.classes.index("bright")]) == {RIGHT}
    # every polygon has chips, including the small one (one chip at its representative point)
    assert sorted(np.unique(data.groups)) == list(range(7))
    assert (data.groups == 3).sum() == 1
    assert data.provenance["small_polygon_fallbacks"] == 1
    # chips are on a lattice with step 4 inside each polygon (same offset within a polygon)
    for g in range(3):
        sel = data.groups == g
        assert len(np.unique(rows[sel] % 4)) == 1 and len(np.unique(cols[sel] % 4)) == 1
    prov = data.provenance
    assert prov["source"] == "polygons" and prov["class_column"] == "landcover"
    assert prov["per_class"] == data.class_counts()
    assert len(prov["scene_sha256"]) == 64 and len(prov["labels_sha256"]) == 64
    assert prov["reprojected_to_scene_crs"] is False


def test_chips_are_stretched_like_geosam_run(scene: Path, polygons: gpd.GeoDataFrame, tmp_path: Path) -> None:
    from geosam.io.read import read_window
    from geosam.preprocess import PercentileScaling
    from geosam.scene_preprocessing import scene_preprocessing
    from geosam.stretch import apply_stretch
    from geosam.types import PixelWindow

    path = tmp_path / "labels.geojson"
    polygons.to_file(path)
    data = polygon_chips(
        scene, path, class_column="landcover", chip_size=CHIP, max_per_polygon=2, dtype="float32"
    )
    # the chips record a per-scene 2-98 percentile stretch; a run resolves that record to the same stretch
    assert data.record.scaling == PercentileScaling(low=2, high=98, sample_size=1024)
    stretch = scene_preprocessing(scene, (1, 2, 3), data.record, [0.5] * 3).stretch
    assert stretch.method == "percentile"
    # decode the centre from the raw scene (the chip is stretched): find the window it was read from
    for chip in data.images[:5]:

        def stored(v: float, b: int) -> int:
            lo, hi = stretch.low[b], stretch.high[b]
            return int(np.rint((v * (hi - lo) + lo - stretch.offset[b]) / stretch.scale[b]))

        col = stored(chip[0, CHIP // 2, CHIP // 2], 0) - 1
        row = stored(chip[1, CHIP // 2, CHIP // 2], 1) - 1
        raw, valid = read_window(scene, PixelWindow(col - CHIP // 2, row - CHIP // 2, CHIP, CHIP), (1, 2, 3))
        want = np.where(valid, apply_stretch(raw, valid, stretch), np.nan)
        np.testing.assert_allclose(chip, want, atol=1e-6)


def test_caps_keep_every_polygon(scene: Path, polygons: gpd.GeoDataFrame, tmp_path: Path) -> None:
    path = tmp_path / "labels.gpkg"
    polygons.to_file(path)
    data = polygon_chips(
        scene, path, class_column="landcover", chip_size=CHIP, spacing=2, max_per_polygon=3, max_per_class=5
    )
    counts = np.bincount(data.groups, minlength=7)
    assert counts.max() <= 3
    assert data.class_counts() == {"bright": 5, "dark": 5}
    # round robin: with 4 dark polygons and room for 5 chips, every dark polygon has one
    assert all(counts[g] >= 1 for g in range(4))
    assert data.images.dtype == np.float16


def test_reprojected_polygons(scene: Path, polygons: gpd.GeoDataFrame, tmp_path: Path) -> None:
    path = tmp_path / "labels_wgs84.geojson"
    polygons.to_crs("EPSG:4326").to_file(path)
    data = polygon_chips(
        scene,
        path,
        class_column="landcover",
        chip_size=CHIP,
        spacing=4,
        normalize=DTYPE_STRETCH,
        dtype="float32",
    )
    assert data.provenance["reprojected_to_scene_crs"] is True
    assert data.provenance["labels_crs"] == "EPSG:4326"
    rows, cols = _centres(data.images)
    for i in range(len(data.labels)):
        poly = polygons.iloc[int(data.groups[i])]
        assert data.classes[data.labels[i]] == poly.landcover
        if data.groups[i] != 3:  # reprojection moves edges by millimetres only
            assert poly.geometry.buffer(0.01).contains(_pixel_centre(rows[i], cols[i]))


def test_grouped_split_keeps_polygons_together(
    scene: Path, polygons: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "labels.gpkg"
    polygons.to_file(path)
    data = polygon_chips(scene, path, class_column="landcover", chip_size=CHIP, spacing=4)
    train, val = stratified_split(data.labels, 0.3, 0, data.groups)
    assert len(val) and len(train)
    assert not set(data.groups[train]) & set(data.groups[val])
    assert set(data.labels[val]) == {0, 1}  # each class is validated


def test_nodata_chips_are_skipped(tmp_path: Path, polygons: gpd.GeoDataFrame) -> None:
    arr = _scene_array()
    nodata = np.zeros((SIZE, SIZE), bool)
    nodata[:, :20] = True  # the left strip is nodata
    scene = make_raster(
        tmp_path / "nd.tif", SIZE, SIZE, count=3, dtype="uint16", fill=arr, nodata=0, nodata_where=nodata
    )
    path = tmp_path / "labels.gpkg"
    polygons.to_file(path)
    data = polygon_chips(
        scene,
        path,
        class_column="landcover",
        chip_size=CHIP,
        spacing=2,
        max_nodata=0.25,
        normalize=DTYPE_STRETCH,
    )
    invalid = np.isnan(data.images[:, 0]).mean(axis=(1, 2))  # invalid pixels are NaN (filled when batched)
    assert invalid.max() <= 0.25
    assert data.provenance["skipped_chips"]["nodata"] > 0
    # chips reaching past the scene edge count their outside pixels as nodata too
    assert np.isnan(data.images[:, 0]).any()
    assert not (data.images[:, 0] == 0).any()  # no invalid pixel poses as a dark value
    # batched for training, invalid pixels get the preprocessing's fill (the model mean), as runs do
    fill = np.array([0.25, 0.5, 0.75], np.float32)
    x = data.model_input(np.arange(len(data.labels)), fill)
    np.testing.assert_array_equal(x[:, 1][np.isnan(data.images[:, 1])], 0.5)


def test_missing_class_column_names_columns(scene: Path, polygons: gpd.GeoDataFrame, tmp_path: Path) -> None:
    path = tmp_path / "labels.gpkg"
    polygons.to_file(path)
    with pytest.raises(DataError) as err:
        polygon_chips(scene, path, class_column="class")
    msg = str(err.value)
    assert "'class'" in msg and "landcover" in msg and "note" in msg and str(path) in msg


def test_polygons_outside_scene(scene: Path, polygons: gpd.GeoDataFrame, tmp_path: Path) -> None:
    path = tmp_path / "far.gpkg"
    polygons.set_geometry(polygons.translate(50_000, 0)).to_file(path)
    with pytest.raises(DataError, match="none of the 7 polygons overlaps the scene"):
        polygon_chips(scene, path, class_column="landcover")


def test_polygon_file_errors(scene: Path, polygons: gpd.GeoDataFrame, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="label file not found"):
        polygon_chips(scene, tmp_path / "missing.gpkg", class_column="landcover")
    one = tmp_path / "one_class.gpkg"
    polygons.assign(landcover="dark").to_file(one)
    with pytest.raises(DataError, match="only one class"):
        polygon_chips(scene, one, class_column="landcover")
    nocrs = tmp_path / "nocrs.shp"
    polygons.to_file(nocrs)
    nocrs.with_suffix(".prj").unlink()
    with pytest.raises(DataError, match="no CRS"):
        polygon_chips(scene, nocrs, class_column="landcover")


# ---------------------------------------------------------------------------------------- label raster


def _scene_labels() -> np.ndarray:
    """Class ids on the scene grid: 1 left, 2 right, a 2-island (8 x 8) in the left half, 0 (nodata) in
    the first 8 columns. Every feature is 2-pixel aligned, so a 20 m copy is exact."""
    lab = np.where(np.arange(SIZE) < SIZE // 2, 1, 2)[None, :].repeat(SIZE, axis=0)
    lab[40:48, 28:36] = 2
    lab[:, :8] = 0
    return lab.astype(np.uint8)


def _label_raster(path: Path, res: float, labels: np.ndarray | None = None) -> Path:
    """``labels`` (default :func:`_scene_labels`) written at ``res`` metres (10: the scene grid; 20: a
    coarser grid)."""
    step = int(res // 10)
    data = (_scene_labels() if labels is None else labels)[::step, ::step]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(res, 0, T.c, 0, -res, T.f),
        nodata=0,
    ) as ds:
        ds.write(data, 1)
    return path


def _expected_majority(lab: np.ndarray, row: int, col: int) -> int:
    """Independent majority: ids 1/2 counted in the chip window (outside the scene: no label)."""
    h = CHIP // 2
    win = lab[max(row - h, 0) : row + h, max(col - h, 0) : col + h]
    n1, n2 = int((win == 1).sum()), int((win == 2).sum())
    return 0 if n1 > n2 else 1 if n2 > n1 else int(lab[row, col]) - 1


@pytest.mark.parametrize("res", [10.0, 20.0])
def test_raster_chips_majority_labels(scene: Path, tmp_path: Path, res: float) -> None:
    lab = _label_raster(tmp_path / "labels.tif", res)
    data = raster_chips(scene, lab, chip_size=CHIP, spacing=4, normalize=DTYPE_STRETCH, dtype="float32")
    assert data.provenance["warped_to_scene_grid"] is (res != 10.0)
    assert data.classes == ("class_1", "class_2")
    rows, cols = _centres(data.images)
    truth = _scene_labels()
    assert (truth[rows, cols] > 0).all()  # centres only where the label is valid
    expected = [_expected_majority(truth, r, c) for r, c in zip(rows, cols, strict=True)]
    np.testing.assert_array_equal(data.labels, expected)
    # chips centred on the island: centre class 2, majority class 1
    island = (rows >= 40) & (rows < 48) & (cols >= 28) & (cols < 36)
    assert island.sum() == 4 and (data.labels[island] == 0).all()
    # groups are 4 x 4-chip blocks (64 px): chips of one group have centres in one block
    block = 4 * CHIP
    for g in np.unique(data.groups):
        sel = data.groups == g
        assert len(np.unique(rows[sel] // block)) == 1 and len(np.unique(cols[sel] // block)) == 1


def test_raster_chips_centre_rule_and_names(scene: Path, tmp_path: Path) -> None:
    lab = _label_raster(tmp_path / "labels.tif", 10.0)
    Path(f"{lab}.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><CategoryNames>'
        "<Category></Category><Category>dark</Category><Category>bright</Category>"
        "</CategoryNames></PAMRasterBand></PAMDataset>"
    )
    data = raster_chips(
        scene,
        lab,
        chip_size=CHIP,
        label_rule="centre",
        normalize=DTYPE_STRETCH,
        dtype="float32",
        max_per_class=6,
    )
    assert data.classes == ("dark", "bright")  # in id order
    assert data.provenance["class_names_from"] == "category names"
    assert data.provenance["class_ids"] == {"dark": [1], "bright": [2]}
    rows, cols = _centres(data.images)
    np.testing.assert_array_equal(data.labels, _scene_labels()[rows, cols] - 1)
    assert data.class_counts() == {"dark": 6, "bright": 6}


def test_raster_chips_classes_option_ignores_unlisted_and_merges(scene: Path, tmp_path: Path) -> None:
    lab = _label_raster(tmp_path / "labels.tif", 10.0)
    with pytest.raises(DataError, match="only one class"):
        raster_chips(scene, lab, chip_size=CHIP, classes={2: "bright"})
    data = raster_chips(scene, lab, chip_size=CHIP, classes={1: "dark", 2: "bright", 3: "unused"})
    assert data.classes == ("dark", "bright")
    truth = _scene_labels()
    truth[:, 96:][truth[:, 96:] == 2] = 3  # the right quarter gets id 3 ...
    lab3 = _label_raster(tmp_path / "labels3.tif", 10.0, truth)
    data = raster_chips(  # ... which the class list merges with id 2
        scene, lab3, chip_size=CHIP, classes={1: "dark", 2: "bright", 3: "bright"}, label_rule="centre",
        normalize=DTYPE_STRETCH, dtype="float32",
    )  # fmt: skip
    assert data.classes == ("dark", "bright")
    assert data.provenance["class_ids"] == {"dark": [1], "bright": [2, 3]}
    rows, cols = _centres(data.images)
    assert (cols >= 96).any()
    np.testing.assert_array_equal(data.labels, (truth[rows, cols] >= 2).astype(int))


def test_raster_chips_errors(scene: Path, tmp_path: Path) -> None:
    floats = tmp_path / "continuous.tif"
    make_raster(floats, SIZE, SIZE, count=1, dtype="float32", fill=0.5)
    with pytest.raises(DataError, match="non-integer"):
        raster_chips(scene, floats, chip_size=CHIP)
    far = tmp_path / "far.tif"
    make_raster(far, 32, 32, count=1, dtype="uint8", fill=1, transform=(10, 0, 900000, 0, -10, 5000000))
    with pytest.raises(DataError, match="no labelled pixel"):
        raster_chips(scene, far, chip_size=CHIP)
    with pytest.raises(DataError, match="label raster not found"):
        raster_chips(scene, tmp_path / "nope.tif", chip_size=CHIP)
