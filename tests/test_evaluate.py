"""``geosam evaluate``: a class map against polygons, points and label rasters, with hand-counted values.

The synthetic map (60 x 40 px of 10 m, EPSG:32633, geosam class map): columns 0-19 water, 20-39 forest,
40-59 crop; rows 0-4 x columns 0-9 are nodata. Polygon edges lie on pixel edges, so which pixel centres
fall inside each polygon is known exactly.
"""

from __future__ import annotations

import json
import math
import tempfile
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosam.accuracy.classes import (
    ClassMapping,
    load_class_mapping,
    match_classes,
    packaged_mappings,
)
from geosam.accuracy.config import EvaluateConfig
from geosam.accuracy.estimators import stratified_estimate
from geosam.accuracy.evaluate import evaluate
from geosam.accuracy.report import to_dict, write_report
from geosam.cli.main import main
from geosam.errors import ConfigError, DataError, GeosamError, MissingCRSError
from geosam.testing import DEFAULT_TRANSFORM, make_raster
from geosam.types import ClassScheme

X0, Y0, RES = 500000.0, 5000000.0, 10.0
W, H = 60, 40
CLASSES = ("water", "forest", "crop")


def map_array() -> np.ndarray:
    arr = np.zeros((H, W), np.uint8)
    arr[:, 20:40] = 1
    arr[:, 40:] = 2
    arr[0:5, 0:10] = 255
    return arr


def box(c0: float, r0: float, c1: float, r1: float):
    import shapely

    return shapely.box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


@pytest.fixture
def class_map(tmp_path: Path) -> Path:
    from geosam.io.cog import write_array_cog

    return write_array_cog(
        tmp_path / "scene_classes.tif",
        map_array(),
        transform=DEFAULT_TRANSFORM,
        crs="EPSG:32633",
        kind="classes",
        scheme=ClassScheme(CLASSES),
    )


def polygons() -> list[tuple[str, object]]:
    return [
        ("water", box(2, 10, 8, 20)),  # P1: 60 px water; 6 of them shared with P5 (another class)
        ("forest", box(16, 10, 26, 20)),  # P2: 40 px water + 60 px forest: majority forest
        ("crop", box(45, 30, 55, 38)),  # P3: 80 px crop
        ("crop", box(0, 0, 10, 10)),  # P4: 50 px nodata + 50 px water
        ("forest", box(6, 15, 10, 18)),  # P5: 12 px water: 6 overlap P1, 6 alone
        ("water", box(12.1, 12.1, 12.4, 12.4)),  # P6: holds no pixel centre (3 m square in a water pixel)
        ("shrub", box(30, 30, 34, 34)),  # P7: 16 px forest; the map has no shrub class
    ]


# rows = map, columns = reference; classes water, forest, crop, shrub
PIXELS = np.array([[54, 46, 50, 0], [0, 60, 0, 16], [0, 0, 80, 0], [0, 0, 0, 0]])
POLYGONS = np.array([[2, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
MAPPED = np.array([750, 800, 800, 0])  # whole map, nodata excluded


def write_vector(
    path: Path, rows: list[tuple[str, object]], crs: str = "EPSG:32633", field: str = "cls"
) -> Path:
    import geopandas as gpd

    gdf = gpd.GeoDataFrame({field: [c for c, _ in rows]}, geometry=[g for _, g in rows], crs="EPSG:32633")
    gdf.to_crs(crs).to_file(path)
    return path


# ------------------------------------------------------------------------------------------- polygons


@pytest.mark.parametrize("window_size", [16, 1024])
@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326"])
def test_polygons_pixel_and_majority_matrices(class_map, tmp_path, window_size, crs):
    ref = write_vector(tmp_path / "ref.gpkg", polygons(), crs)
    ev = evaluate(class_map, ref, EvaluateConfig(window_size=window_size))
    assert ev.classes == ("water", "forest", "crop", "shrub")
    np.testing.assert_array_equal(ev.units.agreement.counts, PIXELS)
    np.testing.assert_array_equal(ev.polygons.agreement.counts, POLYGONS)
    assert ev.units.excluded == {"map_nodata": 50, "overlapping_classes": 6}
    assert ev.reference_info["polygons_without_pixel_centre"] == 1  # P6, by its representative point
    np.testing.assert_array_equal(ev.mapped_pixels, MAPPED)
    assert ev.units.agreement.overall_accuracy == pytest.approx((54 + 60 + 80) / 306)
    assert ev.polygons.agreement.overall_accuracy == pytest.approx(4 / 7)
    assert ev.match.unmatched_reference == ("shrub",)
    # strata weights come from the whole map, not from the sampled pixels
    expected = stratified_estimate(PIXELS, MAPPED)
    s = ev.units.stratified
    np.testing.assert_allclose(s.weights, MAPPED / MAPPED.sum())
    np.testing.assert_allclose(s.area, expected.area)
    assert s.overall_accuracy == pytest.approx(
        750 / 2350 * 54 / 150 + 800 / 2350 * 60 / 76 + 800 / 2350 * 1.0
    )


def test_majority_ties_go_to_the_class_listed_first(class_map, tmp_path):
    ref = write_vector(tmp_path / "tie.gpkg", [("forest", box(15, 10, 25, 20))])  # 50 water, 50 forest
    ev = evaluate(class_map, ref)
    np.testing.assert_array_equal(ev.units.agreement.counts[:, 1], [50, 50, 0])
    np.testing.assert_array_equal(ev.polygons.agreement.counts[:, 1], [1, 0, 0])


def test_drop_unmatched_and_a_mapping_that_merges(class_map, tmp_path):
    ref = write_vector(tmp_path / "ref.gpkg", polygons())
    ev = evaluate(class_map, ref, EvaluateConfig(drop_unmatched=True))
    assert ev.classes == CLASSES
    assert ev.units.excluded["reference_class_not_in_map"] == 16
    np.testing.assert_array_equal(ev.units.agreement.counts, PIXELS[:3, :3])
    # a section renames its own side only: reference water stays "water", unmatched
    mapping = tmp_path / "m.yaml"
    mapping.write_text("map:\n  water: natural\n  Forest: natural\n")
    ev = evaluate(class_map, ref, EvaluateConfig(classes=str(mapping)))
    assert ev.classes == ("natural", "crop", "forest", "shrub", "water")  # reference-only: sorted
    assert ev.match.unmatched_reference == ("forest", "shrub", "water")
    # map water and forest merged into "natural", and so are reference water, forest and shrub
    mapping.write_text(
        "map:\n  water: natural\n  Forest: natural\n"
        "reference:\n  water: natural\n  forest: natural\n  shrub: natural\n"
    )
    ev = evaluate(class_map, ref, EvaluateConfig(classes=str(mapping)))
    assert ev.classes == ("natural", "crop")
    np.testing.assert_array_equal(ev.units.agreement.counts, [[54 + 46 + 60 + 16, 50], [0, 80]])
    np.testing.assert_array_equal(ev.mapped_pixels, [1550, 800])
    assert ev.match.renamed["map"] == {"water": "natural", "forest": "natural"}


def test_field_is_guessed_or_named(class_map, tmp_path):
    ref = write_vector(tmp_path / "ref.gpkg", polygons(), field="landcover")
    assert evaluate(class_map, ref).reference_info["field"] == "landcover"
    blank = write_vector(tmp_path / "blank.gpkg", [*polygons(), ("", box(0, 20, 5, 25))])
    ev = evaluate(class_map, blank)
    assert ev.reference_info["features_without_class"] == 1
    np.testing.assert_array_equal(ev.units.agreement.counts, PIXELS)  # the blank one is left out
    held_out = evaluate(class_map, ref, EvaluateConfig(where="landcover = 'crop'"))
    assert held_out.reference_info["features"] == 2
    np.testing.assert_array_equal(held_out.units.agreement.counts, [[0, 0, 50], [0, 0, 0], [0, 0, 80]])
    with pytest.raises(DataError, match="no feature matches --where"):
        evaluate(class_map, ref, EvaluateConfig(where="landcover = 'ice'"))
    with pytest.raises(DataError, match="cannot read the reference features"):
        evaluate(class_map, ref, EvaluateConfig(where="no_such_column > 3"))
    odd = write_vector(tmp_path / "odd.gpkg", polygons(), field="what")
    assert evaluate(class_map, odd).reference_info["field"] == "what"  # the only text field
    with pytest.raises(
        DataError, match=r"no class field 'klass'; the fields are what: pass one with --field"
    ):
        evaluate(class_map, odd, EvaluateConfig(field="klass"))


# --------------------------------------------------------------------------------------------- points


def test_points(class_map, tmp_path):
    import shapely

    def centre(c, r):
        return shapely.Point(X0 + (c + 0.5) * RES, Y0 - (r + 0.5) * RES)

    rows = [
        ("water", centre(5, 20)),  # water, right
        ("water", centre(5, 20)),  # same pixel again: a second unit
        ("forest", centre(25, 5)),  # forest, right
        ("crop", centre(25, 6)),  # forest map, crop reference
        ("crop", centre(50, 39)),  # crop, right
        ("water", centre(2, 2)),  # map nodata
        ("water", shapely.Point(X0 - 100, Y0)),  # outside the map
        ("forest", shapely.MultiPoint([centre(30, 30), centre(45, 10)])),  # two units: right, wrong
    ]
    ref = write_vector(tmp_path / "pts.geojson", rows, "EPSG:4326")
    ev = evaluate(class_map, ref, EvaluateConfig(window_size=16))
    assert ev.kind == "points" and ev.units.units == "points" and ev.polygons is None
    np.testing.assert_array_equal(ev.units.agreement.counts, [[2, 0, 0], [0, 2, 1], [0, 1, 1]])
    assert ev.units.excluded == {"map_nodata": 1, "outside_map": 1}
    d = to_dict(ev)
    assert d["points"]["n"] == 7 and d["points"]["overall_accuracy"] == pytest.approx(5 / 7)


# --------------------------------------------------------------------------------------- label raster


def write_pam_categories(path: Path, names: list[str]) -> None:
    cats = "".join(f"<Category>{n}</Category>" for n in names)
    Path(f"{path}.aux.xml").write_text(
        f'<PAMDataset><PAMRasterBand band="1"><CategoryNames>{cats}</CategoryNames>'
        "</PAMRasterBand></PAMDataset>"
    )


def test_label_raster_on_another_grid_and_crs(class_map, tmp_path):
    """A 2.5 m label raster in UTM 34N: warped onto the map grid, each map pixel takes its centre's label."""
    from pyproj import Transformer

    to34 = Transformer.from_crs("EPSG:32633", "EPSG:32634", always_xy=True)
    to33 = Transformer.from_crs("EPSG:32634", "EPSG:32633", always_xy=True)
    xs, ys = to34.transform([X0 - 20, X0 + 620, X0 - 20, X0 + 620], [Y0 + 20, Y0 + 20, Y0 - 420, Y0 - 420])
    left, top = min(xs), max(ys)
    width, height = math.ceil((max(xs) - left) / 2.5), math.ceil((top - min(ys)) / 2.5)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    gx, gy = to33.transform(left + (cols + 0.5) * 2.5, top - (rows + 0.5) * 2.5)
    # label by position in the map CRS: 1 "water" west of x0 + 150 m, 3 "crop" east of x0 + 450 m,
    # 2 "forest" between; 0 (nodata) in the southern 100 m
    labels = np.where(gx < X0 + 150, 1, np.where(gx < X0 + 450, 2, 3)).astype(np.uint16)
    labels[gy < Y0 - 300] = 0
    ref = make_raster(
        tmp_path / "labels.tif", width, height, 1, "uint16", "EPSG:32634", (2.5, 0, left, 0, -2.5, top),
        nodata=0, fill=labels[None],
    )  # fmt: skip
    write_pam_categories(ref, ["", "water", "forest", "crop"])
    ev = evaluate(class_map, ref)
    assert ev.reference_info["warped_to_map_grid"] is True
    assert ev.reference_info["class_names_from"] == "category names"
    # rows 0-29 are labelled; map columns: water 0-19, forest 20-39, crop 40-59;
    # reference columns: water 0-14, forest 15-44, crop 45-59; nodata block rows 0-4 x cols 0-9
    expected = np.array([[25 * 10 + 30 * 5, 30 * 5, 0], [0, 30 * 20, 0], [0, 30 * 5, 30 * 15]])
    np.testing.assert_array_equal(ev.units.agreement.counts, expected)
    assert ev.units.excluded == {"map_nodata": 50}


def test_label_raster_on_the_same_grid_with_float_ids_and_extra_nodata(class_map, tmp_path):
    arr = np.where(map_array() == 255, 0, map_array()).astype(np.float32) + 1  # ids 1, 2, 3
    arr[:, 55:] = 0  # "no label" given with --reference-nodata
    arr[35:, :] = -99999  # the raster's own nodata
    ref = make_raster(tmp_path / "same.tif", W, H, 1, "float32", nodata=-99999, fill=arr[None])
    mapping = tmp_path / "ids.csv"
    mapping.write_text("reference id,map class\n1,water\n2,forest\n3,crop\n")
    ev = evaluate(class_map, ref, EvaluateConfig(classes=str(mapping), reference_nodata=0))
    assert ev.reference_info["warped_to_map_grid"] is False
    # ids on nodata map pixels were 0 + 1 = 1 (water): those 50 pixels are map nodata
    np.testing.assert_array_equal(ev.units.agreement.counts, np.diag([20 * 35 - 50, 20 * 35, 15 * 35]))
    assert ev.units.excluded == {"map_nodata": 50}
    assert ev.units.agreement.kappa == pytest.approx(1.0)


# ------------------------------------------------------------------------------- other tools' maps


def test_a_foreign_integer_map_named_by_a_mapping_file(tmp_path):
    arr = np.where(map_array() == 255, -1, (map_array().astype(np.int32) + 1) * 10)  # 10, 20, 30
    cmap = make_raster(tmp_path / "lc.tif", W, H, 1, "int32", nodata=-1, fill=arr[None])
    ref = write_vector(tmp_path / "ref.gpkg", polygons())
    mapping = tmp_path / "lc.yaml"
    mapping.write_text("10: water\n20: forest\n30: crop\n")
    ev = evaluate(cmap, ref, EvaluateConfig(classes=str(mapping)))
    assert ev.map.names_from == "values"
    np.testing.assert_array_equal(ev.units.agreement.counts, PIXELS)
    with pytest.raises(DataError, match="no reference class matches a map class; map classes: 10, 20, 30"):
        evaluate(cmap, ref)


def test_category_names_and_attribute_tables_name_a_map(tmp_path):
    from geosam.io.pam import class_map_pam_xml

    arr = map_array()
    cmap = make_raster(tmp_path / "cats.tif", W, H, 1, "uint8", nodata=255, fill=arr[None])
    write_pam_categories(cmap, list(CLASSES))
    ev = evaluate(cmap, write_vector(tmp_path / "ref.gpkg", polygons()))
    assert ev.map.names_from == "category names"
    np.testing.assert_array_equal(ev.units.agreement.counts, PIXELS)
    # attribute table only (names in a RAT column, as ArcGIS writes them)
    xml = class_map_pam_xml(ClassScheme(CLASSES))
    start, end = xml.index("<CategoryNames>"), xml.index("</CategoryNames>") + len("</CategoryNames>")
    Path(f"{cmap}.aux.xml").write_text(xml[:start] + xml[end:])
    assert evaluate(cmap, tmp_path / "ref.gpkg").map.names_from == "attribute table"


def test_non_integer_maps_are_refused(tmp_path):
    cmap = make_raster(tmp_path / "conf.tif", W, H, 1, "float32", fill="random")
    ref = write_vector(tmp_path / "ref.gpkg", polygons())
    with pytest.raises(DataError, match="class map holds non-integer values"):
        evaluate(cmap, ref)


# ----------------------------------------------------------------------------------- class mappings


def test_class_mapping_formats(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("AnnualCrop: agriculture\nCloud: null\n1: forest\n")
    m = load_class_mapping(flat)
    assert (
        m.rename("annualcrop", "map") == "agriculture"
        and m.rename("annualcrop", "reference") == "agriculture"
    )
    assert m.rename("Cloud", "map") is None and m.rename("1", "reference") == "forest"
    assert m.rename("Forest", "map") == "Forest"
    csv_file = tmp_path / "m.csv"
    csv_file.write_text("source,target\nAnnualCrop,agriculture\nCloud,\n")
    assert load_class_mapping(csv_file).rename("Cloud", "reference") is None
    packaged = load_class_mapping("eurosat_to_raleigh")
    assert "eurosat_to_raleigh" in packaged_mappings()
    assert packaged.rename("PermanentCrop", "map") == "agriculture"
    assert packaged.rename("PermanentCrop", "reference") == "PermanentCrop"  # the map side only
    eurosat = [
        "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
        "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
    ]  # fmt: skip
    raleigh = ["agriculture", "developed", "forest", "herbaceous", "sediment", "shrubland", "water"]
    match = match_classes(eurosat, raleigh, packaged)
    assert set(match.classes[: match.n_map_classes]) == {
        "agriculture",
        "forest",
        "herbaceous",
        "developed",
        "water",
    }
    assert match.unmatched_reference == ("sediment", "shrubland") and match.unmatched_map == ()


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("a: [b, c]\n", ".yaml", "the target of 'a' must be a class name or null"),
        ("a: b\nA: c\n", ".yaml", "'A' is mapped twice"),
        ("[a, b]\n", ".yaml", "non-empty YAML mapping"),
        ("a: b: c\n", ".yaml", "not a valid YAML/JSON class mapping"),
        ("source,target\na,b,c\n", ".csv", "row 2 has 3 columns"),
    ],
)
def test_bad_class_mappings(tmp_path, text, suffix, message):
    p = tmp_path / f"bad{suffix}"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_class_mapping(p)
    assert str(err.value).startswith(str(p))
    with pytest.raises(ConfigError, match=r"class-mapping file not found; .*eurosat_to_raleigh"):
        load_class_mapping(tmp_path / "missing.yaml")


def test_matching_is_case_insensitive_and_keeps_the_map_spelling():
    m = match_classes(["Forest", "Water"], ["forest", "water ", "urban"], ClassMapping())
    assert m.classes == ("Forest", "Water", "urban")
    assert m.reference_index == {"forest": 0, "water ": 1, "urban": 2}


# ---------------------------------------------------------------------------------------- bad input


def test_reference_that_misses_the_map(class_map, tmp_path):
    import shapely

    far = write_vector(tmp_path / "far.gpkg", [("water", shapely.box(0, 0, 10, 10))])
    with pytest.raises(DataError, match=r"no reference feature overlaps the map .* check that the reference"):
        evaluate(class_map, far)
    far_raster = make_raster(tmp_path / "far.tif", 10, 10, 1, "uint8", transform=(10, 0, 0, 0, -10, 100))
    with pytest.raises(DataError, match="the reference raster does not overlap the map"):
        evaluate(class_map, far_raster)


def test_bad_inputs_name_the_file(class_map, tmp_path):
    import geopandas as gpd

    lines = tmp_path / "lines.gpkg"
    gpd.GeoDataFrame({"cls": ["a"]}, geometry=[box(0, 0, 5, 5).boundary], crs="EPSG:32633").to_file(lines)
    with pytest.raises(DataError, match="must be polygons or points") as err:
        evaluate(class_map, lines)
    assert err.value.path == str(lines)
    shp = tmp_path / "nocrs.shp"
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame({"cls": ["a"]}, geometry=[box(0, 0, 5, 5)]).to_file(shp)
    with pytest.raises(DataError, match="have no CRS"):
        evaluate(class_map, shp)
    mixed = write_vector(tmp_path / "mixed.gpkg", [("a", box(0, 0, 5, 5)), ("b", box(1, 1, 2, 2).centroid)])
    with pytest.raises(DataError, match="mixes points and polygons"):
        evaluate(class_map, mixed)
    flat = make_raster(tmp_path / "nogeo.tif", 10, 10, 1, "uint8", crs=None, transform=None)
    with pytest.raises(MissingCRSError, match="no CRS or geotransform"):
        evaluate(flat, lines)
    with pytest.raises(DataError, match="reference data not found"):
        evaluate(class_map, tmp_path / "missing.gpkg")
    with pytest.raises(GeosamError, match="class map not found"):
        evaluate(tmp_path / "missing.tif", lines)
    ref = write_vector(tmp_path / "ref.gpkg", [("crop", box(0, 0, 10, 5))])  # only nodata pixels
    with pytest.raises(DataError, match="no reference unit falls on a valid map pixel"):
        evaluate(class_map, ref)


# ------------------------------------------------------------------------------------------- memory


def test_memory_is_bounded_by_the_window(tmp_path):
    """A 3000 x 3000 map read in 256 px windows: peak numpy memory far below one whole-map int64 array."""
    import shapely

    arr = np.zeros((1, 3000, 3000), np.uint8)
    arr[0, :, 1500:] = 1
    cmap = make_raster(tmp_path / "big.tif", 3000, 3000, 1, "uint8", fill=arr, compress="deflate")
    write_pam_categories(cmap, ["a", "b"])
    pts = [
        ("a", shapely.Point(X0 + 100 * RES, Y0 - 100 * RES)),
        ("b", shapely.Point(X0 + 2000 * RES, Y0 - 5)),
    ]
    ref = write_vector(tmp_path / "pts.gpkg", pts)
    del arr
    tracemalloc.start()
    ev = evaluate(cmap, ref, EvaluateConfig(window_size=256))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(ev.mapped_pixels, [4_500_000, 4_500_000])
    assert ev.units.agreement.overall_accuracy == 1.0
    assert peak < 16e6, f"peak {peak / 1e6:.1f} MB (a whole-map int64 array is 72 MB)"


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_writes_json_png_and_a_table(class_map, tmp_path, capsys):
    ref = write_vector(tmp_path / "ref.gpkg", polygons())
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        textwrap.dedent("""\
        description: shrub is forest here
        reference:
          shrub: forest
    """)
    )
    out = tmp_path / "report"
    code = main(["evaluate", str(class_map), str(ref), "--classes", str(mapping), "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "overall accuracy" in text and "PA %" in text and "forest" in text
    data = json.loads((out / "scene_classes_evaluation.json").read_text())
    assert data["classes"] == ["water", "forest", "crop"]
    counts = [[54, 46, 50], [0, 76, 0], [0, 0, 80]]
    assert data["pixels"]["confusion_matrix"] == {
        "rows": "map",
        "columns": "reference",
        "classes": ["water", "forest", "crop"],
        "counts": counts,
    }
    assert data["pixels"]["overall_accuracy"] == pytest.approx(210 / 306)
    forest = data["pixels"]["per_class"]["forest"]
    assert forest["users_accuracy"] == 1.0 and forest["producers_accuracy"] == pytest.approx(76 / 122)
    assert forest["iou"] == pytest.approx(76 / 122)
    assert data["polygons"]["confusion_matrix"]["counts"] == [[2, 1, 1], [0, 2, 0], [0, 0, 1]]
    assert data["pixels"]["excluded"] == {"map_nodata": 50, "overlapping_classes": 6}
    assert data["class_mapping"]["reference"] == {"shrub": "forest"}
    assert data["renamed"]["reference"] == {"shrub": "forest"}
    assert data["mapped_pixels"] == {"water": 750, "forest": 800, "crop": 800}
    adj = data["pixels"]["area_adjusted"]
    s = stratified_estimate(np.array(counts), np.array([750, 800, 800]))
    assert adj["overall_accuracy"]["estimate"] == pytest.approx(s.overall_accuracy)
    assert adj["overall_accuracy"]["ci_half_width"] == pytest.approx(
        1.959964 * s.overall_accuracy_se, rel=1e-6
    )
    assert adj["per_class"]["crop"]["area_ha"]["estimate"] == pytest.approx(s.area[2] * 100 / 10_000)
    assert adj["per_class"]["water"]["stratum_weight"] == pytest.approx(750 / 2350)
    assert adj["pixel_area_m2"] == 100.0
    from PIL import Image

    for name in ("scene_classes_confusion.png", "scene_classes_confusion_polygons.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 200


def test_cli_errors_are_one_line(class_map, tmp_path, capsys):
    ref = write_vector(tmp_path / "ref.gpkg", polygons())
    assert main(["evaluate", str(class_map), str(ref), "--field", "nope"]) == DataError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"geosam: error: {ref}: no class field 'nope'")
    assert main(["evaluate", str(class_map), str(ref), "--classes", "nosuchmap"]) == ConfigError.exit_code
    assert "class-mapping file not found" in capsys.readouterr().err
    assert main(["evaluate", str(class_map), str(ref), "--confidence", "1.5"]) == ConfigError.exit_code
    assert "'confidence'" in capsys.readouterr().err


def test_imagery_given_as_the_map_is_one_line(tmp_path, capsys):
    """A multi-band float scene (whole-number values, no class names) is refused, not read as class ids."""
    from geosam.errors import NotARasterError

    scene = make_raster(tmp_path / "scene.tif", 40, 30, count=5, dtype="float32", fill="random")
    ref = write_vector(tmp_path / "ref.gpkg", polygons())
    assert main(["evaluate", str(scene), str(ref)]) == NotARasterError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a class map" in err
    assert "5 float32 bands" in err and str(scene) in err
    one_band = make_raster(tmp_path / "one.tif", 40, 30, count=1, dtype="float32", fill=2.0)
    from geosam.accuracy.classmap import open_map

    assert open_map(one_band).dtype == "float32"  # a one-band float raster of class ids stays a map


def test_report_writes_next_to_the_map_by_default(class_map, tmp_path):
    ev = evaluate(class_map, write_vector(tmp_path / "ref.gpkg", polygons()))
    paths = write_report(ev)
    assert {p.parent for p in paths.values()} == {class_map.parent}
    assert all(p.is_file() for p in paths.values())


# -------------------------------------------------------------------------------------- sample scene


def test_label_pixels_of_the_sample_scene_against_its_polygons(sample_data):
    """The scene's rasterised polygons (float32 ids 1-7, nodata -99999, no names) as a map: all agree."""
    import geopandas as gpd
    import rasterio
    from rasterio.features import rasterize

    labels, polys = sample_data / "landsat96_labelled_pixels.tif", sample_data / "landsat96_polygons.shp"
    ev = evaluate(labels, polys, EvaluateConfig(field="id", window_size=128))
    assert ev.map.names_from == "values" and ev.classes == ("1", "2", "3", "4", "5", "6", "7")
    # one of the 34 polygons lies south of the scene
    assert ev.reference_info["features_outside_map"] == 1
    assert ev.polygons.agreement.overall_accuracy == 1.0 and ev.polygons.agreement.n == 33
    # the label raster was burnt with touched pixels, a superset of the pixel centres: all agree
    with rasterio.open(labels) as ds:
        gdf = gpd.read_file(polys).to_crs(ds.crs)
        inside = rasterize(gdf.geometry, out_shape=ds.shape, transform=ds.transform, fill=0) > 0
    assert ev.units.agreement.overall_accuracy == 1.0 and ev.units.agreement.n == inside.sum()


# ------------------------------------------------------------------------------------ window seams


def _oracle(arr: np.ndarray, rows: list[tuple[str, object]], names: list[str]):
    """Whole-map, polygon-by-polygon counts without windows, bounding boxes or spatial indexes."""
    import shapely
    from affine import Affine
    from rasterio.features import rasterize

    t = Affine(*DEFAULT_TRANSFORM)
    k = len(names)
    masks = np.stack(
        [rasterize([(g, 1)], out_shape=arr.shape, transform=t, fill=0, dtype="uint8") > 0 for _, g in rows]
    )
    cls = np.array([names.index(c) for c, _ in rows])
    classes_at = [set(cls[masks[:, r, c]]) for r, c in np.ndindex(arr.shape)]
    pixels = np.zeros((k, k), np.int64)
    for (r, c), s in zip(np.ndindex(arr.shape), classes_at, strict=True):
        if len(s) == 1 and arr[r, c] != 255:
            pixels[arr[r, c], s.pop()] += 1
    polys = np.zeros((k, k), np.int64)
    for p, (_, g) in enumerate(rows):
        under = arr[masks[p]]
        if not masks[p].any():
            x, y = shapely.get_coordinates(g.representative_point())[0]
            col, row = (int(np.floor(v)) for v in ~t @ (x, y))
            inside = 0 <= row < arr.shape[0] and 0 <= col < arr.shape[1]
            under = arr[row, col : col + 1] if inside else under
        under = under[under != 255]
        if under.size:
            polys[np.bincount(under, minlength=k).argmax(), cls[p]] += 1
    return pixels, polys


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_windowed_counts_equal_a_whole_map_count(tmp_path, data):
    from geosam.io.cog import write_array_cog

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    h, w = data.draw(st.integers(20, 50)), data.draw(st.integers(20, 50))
    arr = rng.integers(0, 3, (h, w)).astype(np.uint8)
    arr[rng.random((h, w)) < 0.1] = 255
    boxes = st.tuples(st.floats(-3, w + 3), st.floats(-3, h + 3), st.floats(0.2, 25), st.floats(0.2, 25))
    rows = [
        (data.draw(st.sampled_from(CLASSES)), box(c, r, c + dw, r + dh))
        for c, r, dw, dh in data.draw(st.lists(boxes, min_size=1, max_size=8))
    ]
    case = Path(tempfile.mkdtemp(dir=tmp_path))
    cmap = write_array_cog(
        case / "m.tif", arr, transform=DEFAULT_TRANSFORM, crs="EPSG:32633", kind="classes",
        scheme=ClassScheme(CLASSES),
    )  # fmt: skip
    ref = write_vector(case / "r.gpkg", rows)
    pixels, polys = _oracle(arr, rows, list(CLASSES))
    try:
        ev = evaluate(cmap, ref, EvaluateConfig(window_size=16))
    except DataError as err:  # no polygon on the map, or only on nodata pixels
        assert "overlaps the map" in str(err) or "no reference unit" in str(err)
        assert pixels.sum() == 0
        return
    k = len(CLASSES)
    np.testing.assert_array_equal(ev.units.agreement.counts[:k, :k], pixels)
    np.testing.assert_array_equal(ev.polygons.agreement.counts[:k, :k], polys)
