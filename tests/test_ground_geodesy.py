"""Issue 11 items 2 and 3: one ground-distance rule; GSD and ``area_m2`` are true ground values in every CRS.

The kind: sizes taken in CRS units. Web Mercator metres are not ground metres (10 "m" at 60 N are
5 m), UTM metres are off by the scale factor, degrees are not metres at all (lon/lat scenes were not
resolution-matched), US feet are not metres. Each value is checked against a reference computed
another way: closed-form ellipsoid formulas (radii of curvature, the area of a longitude/latitude
quadrangle), Web Mercator's and Mercator's inverse, and PROJ's scale factors (``Proj.get_factors``) for
conformal projections. Generated variants: latitude, longitude, pixel size (1 cm..1 km), rotation,
CRS (hypothesis).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from helpers_field import blocky, crop, relabel, rotated, run_geosam, tiny_bundle_at, warp
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Proj, Transformer
from rasterio.features import rasterize
from shapely.geometry import MultiPolygon, Polygon, box

from geosam.geodesy import densify_length, geodesic_areas_m2, ground_resolution, round_significant
from geosam.testing import make_raster

A = 6378137.0
F = 1 / 298.257223563
E2 = F * (2 - F)
E = math.sqrt(E2)
B = A * (1 - F)


def n_radius(phi: float) -> float:
    """Prime-vertical radius of curvature of WGS 84 at latitude ``phi`` (radians)."""
    return A / math.sqrt(1 - E2 * math.sin(phi) ** 2)


def m_radius(phi: float) -> float:
    """Meridional radius of curvature of WGS 84."""
    return A * (1 - E2) / (1 - E2 * math.sin(phi) ** 2) ** 1.5


def quadrangle_area(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Area in m^2 of the WGS 84 region between two meridians and two parallels (degrees), closed form."""

    def q(phi: float) -> float:
        s = math.sin(phi)
        return s / (1 - E2 * s * s) + math.log((1 + E * s) / (1 - E * s)) / (2 * E)

    dlon = math.radians(abs(lon2 - lon1))
    return B * B / 2 * dlon * abs(q(math.radians(lat2)) - q(math.radians(lat1)))


def merc_lat(y: float) -> float:
    """Latitude (degrees) of a Web Mercator northing (EPSG:3857 is spherical Mercator of radius A)."""
    return math.degrees(2 * math.atan(math.exp(y / A)) - math.pi / 2)


lats = st.floats(-80, 80)
lons = st.floats(-179, 179)
pixel_m = st.floats(math.log10(0.01), math.log10(1000)).map(lambda v: 10**v)


# -- GSD ------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(lat=lats, lon=lons, px=pixel_m)
def test_gsd_of_lonlat_pixels_is_measured_on_the_ellipsoid(lat, lon, px):
    deg = px / 111_000  # a pixel of about ``px`` metres
    width = height = 100
    top = min(89.0, lat + deg * height / 2)
    res = ground_resolution("EPSG:4326", (deg, 0, lon, 0, -deg, top), width, height)
    phi = math.radians(res.lat)
    assert res.lat == pytest.approx(top - deg * height / 2, abs=1e-9)
    assert res.x_m == pytest.approx(n_radius(phi) * math.cos(phi) * math.radians(deg), rel=1e-6)
    assert res.y_m == pytest.approx(m_radius(phi) * math.radians(deg), rel=1e-6)
    assert res.crs_pixel_m is None


@settings(max_examples=150, deadline=None)
@given(lat=lats, px=pixel_m)
def test_gsd_of_web_mercator_pixels_is_not_mercator_metres(lat, px):
    x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, lat)
    res = ground_resolution("EPSG:3857", (px, 0, x0, 0, -px, y0 + 100 * px), 200, 200)
    phi = math.radians(merc_lat(y0))
    # EPSG:3857 maps longitude linearly (x = A * lon) and latitude as spherical Mercator, but its
    # latitudes and longitudes are WGS 84's: ground lengths are taken on the ellipsoid
    assert res.x_m == pytest.approx(px / A * n_radius(phi) * math.cos(phi), rel=1e-6)
    assert res.y_m == pytest.approx(px / A * math.cos(phi) * m_radius(phi), rel=1e-6)
    assert res.crs_pixel_m == pytest.approx(px)


def test_web_mercator_at_60n_as_reported():
    """The issue's case: 10 "Mercator metres" at 60 N are 5.0 m on the ground (was taken as 10 m)."""
    x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, 60.0)
    res = ground_resolution("EPSG:3857", (10, 0, x0, 0, -10, y0 + 1000), 200, 200)
    assert res.mean_m == pytest.approx(5.009, abs=0.001)
    assert res.scale_factor == pytest.approx(1.996, abs=0.002)


CONFORMAL = ["EPSG:32633", "EPSG:32719", "EPSG:3395", "EPSG:2154", "EPSG:3413", "EPSG:2264", "EPSG:32660"]


@settings(max_examples=120, deadline=None)
@given(
    crs=st.sampled_from(CONFORMAL),
    u=st.floats(0.1, 0.9),
    v=st.floats(0.1, 0.9),
    px=pixel_m,
    angle=st.floats(0, 360),
)
def test_gsd_of_conformal_projections_is_nominal_over_the_scale_factor(crs, u, v, px, angle):
    c = CRS.from_user_input(crs)
    w, s, e, n = c.area_of_use.bounds
    lon, lat = w + u * (e - w), s + v * (n - s)
    x, y = Transformer.from_crs(4326, c, always_xy=True).transform(lon, lat)
    unit = c.axis_info[0].unit_conversion_factor
    t = rotated(px / unit, angle, x, y)
    # centre the scene on (x, y): the transform's origin moves back by half a scene
    cx, cy = t @ (50, 50)
    t = rotated(px / unit, angle, 2 * x - cx, 2 * y - cy)
    res = ground_resolution(crs, t, 100, 100)
    k = Proj(c).get_factors(res.lon, res.lat)
    assert k.meridional_scale == pytest.approx(k.parallel_scale, rel=1e-6)  # conformal
    assert res.x_m == pytest.approx(px / k.parallel_scale, rel=2e-6)
    assert res.y_m == pytest.approx(px / k.parallel_scale, rel=2e-6)


# -- areas ----------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(lat=st.floats(-85, 84), lon=lons, dlat=st.floats(1e-6, 1.0), dlon=st.floats(1e-6, 1.0))
def test_area_of_a_lonlat_box_is_the_ellipsoidal_quadrangle(lat, lon, dlat, dlon):
    b = box(lon, lat, lon + dlon, lat + dlat)
    px = max(dlon, dlat) / 100  # square pixels, 100 along the longer side
    seg = densify_length("EPSG:4326", (px, 0, lon, 0, -px, lat + dlat), 100, 100, pixel=True)
    got = geodesic_areas_m2([b], "EPSG:4326", max_segment=seg)[0]
    assert got == pytest.approx(quadrangle_area(lon, lat, lon + dlon, lat + dlat), rel=1e-6)


@settings(max_examples=100, deadline=None)
@given(lat=lats, px=pixel_m, n=st.integers(1, 400))
def test_area_of_a_web_mercator_box_is_its_quadrangle(lat, px, n):
    x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, lat)
    b = box(x0, y0, x0 + n * px, y0 + n * px)
    seg = densify_length("EPSG:3857", (px, 0, x0, 0, -px, y0 + n * px), n, n, pixel=True)
    got = geodesic_areas_m2([b], "EPSG:3857", max_segment=seg)[0]
    lon1, lon2 = math.degrees(x0 / A), math.degrees((x0 + n * px) / A)
    want = quadrangle_area(lon1, merc_lat(y0), lon2, merc_lat(y0 + n * px))
    assert got == pytest.approx(want, rel=1e-6)


def test_web_mercator_area_at_60n_as_reported():
    """200 x 200 pixels of 10 Mercator metres, the scene's top edge at 60 N: 4,000,000 m2 in CRS units."""
    x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, 60.0)
    b = box(x0, y0 - 2000, x0 + 2000, y0)
    got = geodesic_areas_m2([b], "EPSG:3857", max_segment=10.0)[0]
    want = quadrangle_area(10.0, merc_lat(y0 - 2000), math.degrees((x0 + 2000) / A), 60.0)
    assert b.area == pytest.approx(4_000_000)
    assert got == pytest.approx(want, rel=1e-6)
    assert 1_003_000 < got < 1_004_500  # not 4,000,000


@pytest.mark.parametrize("crs", ["EPSG:6933", "EPSG:3035", "EPSG:5070"])
def test_equal_area_projections_give_their_planar_area(crs):
    c = CRS.from_user_input(crs)
    w, s, e, n = c.area_of_use.bounds
    x, y = Transformer.from_crs(4326, c, always_xy=True).transform((w + e) / 2, (s + n) / 2)
    for side in (0.01, 1.0, 300.0, 50_000.0):
        b = box(x, y, x + side, y + side)
        seg = side / 50
        assert geodesic_areas_m2([b], crs, max_segment=seg)[0] == pytest.approx(side * side, rel=1e-5)


@settings(max_examples=60, deadline=None)
@given(crs=st.sampled_from(CONFORMAL), u=st.floats(0.1, 0.9), v=st.floats(0.1, 0.9), px=pixel_m)
def test_area_of_a_pixel_is_its_planar_area_over_the_squared_scale_factor(crs, u, v, px):
    c = CRS.from_user_input(crs)
    w, s, e, n = c.area_of_use.bounds
    lon, lat = w + u * (e - w), s + v * (n - s)
    x, y = Transformer.from_crs(4326, c, always_xy=True).transform(lon, lat)
    unit = c.axis_info[0].unit_conversion_factor
    side = px / unit
    got = geodesic_areas_m2([box(x, y, x + side, y + side)], crs)[0]
    k = Proj(c).get_factors(
        *Transformer.from_crs(c, 4326, always_xy=True).transform(x + side / 2, y + side / 2)
    )
    assert got == pytest.approx(px * px / k.areal_scale, rel=1e-4)


def test_area_ignores_ring_orientation_and_subtracts_holes():
    outer = [(500000, 5000000), (500300, 5000000), (500300, 5000300), (500000, 5000300)]
    inner = [(500100, 5000100), (500200, 5000100), (500200, 5000200), (500100, 5000200)]
    full = geodesic_areas_m2([Polygon(outer)], "EPSG:32633")[0]
    hole = geodesic_areas_m2([Polygon(inner)], "EPSG:32633")[0]
    for ring_o, ring_i in ((outer, inner), (outer[::-1], inner), (outer, inner[::-1])):
        assert geodesic_areas_m2([Polygon(ring_o, [ring_i])], "EPSG:32633")[0] == pytest.approx(full - hole)
    multi = MultiPolygon([Polygon(outer), box(600000, 5000000, 600100, 5000100)])
    two = geodesic_areas_m2([Polygon(outer), box(600000, 5000000, 600100, 5000100)], "EPSG:32633")
    assert geodesic_areas_m2([multi], "EPSG:32633")[0] == pytest.approx(two.sum())
    assert list(geodesic_areas_m2([None, Polygon()], "EPSG:32633")) == [0.0, 0.0]


def test_area_across_the_antimeridian_equals_the_same_box_elsewhere():
    east = geodesic_areas_m2([box(179.5, 10.0, 180.5, 11.0)], "EPSG:4326", max_segment=0.01)[0]
    here = geodesic_areas_m2([box(10.0, 10.0, 11.0, 11.0)], "EPSG:4326", max_segment=0.01)[0]
    assert east == pytest.approx(here, rel=1e-9)
    # UTM zone 60 at 50 N: x = 700..730 km crosses 180 E; the same box in zone 33 has the same area
    b = box(700_000, 5_540_000, 730_000, 5_570_000)
    lon = Transformer.from_crs(32660, 4326, always_xy=True).transform([700_000, 730_000], [5_555_000] * 2)[0]
    assert lon[0] > 0 > lon[1]  # it does cross
    across = geodesic_areas_m2([b], "EPSG:32660", max_segment=1000)[0]
    assert across == pytest.approx(geodesic_areas_m2([b], "EPSG:32633", max_segment=1000)[0], rel=1e-9)


def test_round_significant_keeps_small_areas():
    assert round_significant(0.000123456789, 7) == 0.0001234568
    assert round_significant(991557.31, 7) == 991557.3
    assert round_significant(0.0, 7) == 0.0


# -- the pipeline ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle_at(tmp_path_factory.mktemp("geod") / "bundle", gsd_m=10.0)


def _blocky_rgb(path, size, px, *, seed, block=8, crs="EPSG:32633", origin=(500000.0, 5000000.0)):
    """A north-up ``size`` x ``size`` uint8 RGB scene of flat blocks, ``px`` CRS units per pixel."""
    x0, y0 = origin
    return make_raster(
        path,
        size,
        size,
        count=3,
        dtype="uint8",
        crs=crs,
        transform=(px, 0.0, x0, 0.0, -px, y0),
        fill=blocky(size, size, seed=seed, block=block),
        colorinterp=["red", "green", "blue"],
    )


def _mercator_scene(path, lat_top=60.0, px=10.0, size=96):
    origin = Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, lat_top)
    return _blocky_rgb(path, size, px, seed=3, crs="EPSG:3857", origin=origin)


def _pixel_areas_3857(transform, height, width):
    """Closed-form ground area of every pixel of a north-up Web Mercator grid (rows differ)."""
    t = transform
    out = np.empty((height, width))
    for r in range(height):
        y_top, y_bot = t.f + r * t.e, t.f + (r + 1) * t.e
        lon1, lon2 = math.degrees(t.c / A), math.degrees((t.c + t.a) / A)
        out[r] = quadrangle_area(lon1, merc_lat(y_bot), lon2, merc_lat(y_top))
    return out


def test_region_areas_in_web_mercator_are_ground_areas(bundle, tmp_path, capsys, caplog):
    import geopandas as gpd

    scene = _mercator_scene(tmp_path / "merc60.tif")
    out = tmp_path / "out"
    rc, _, err, records = run_geosam(
        ["run", str(scene), "--model", str(bundle), "--out", str(out)], capsys, caplog
    )
    assert rc == 0, err
    rec = json.loads((out / "merc60_run.json").read_text())
    assert rec["tiling"]["scene_gsd_m"] == pytest.approx(5.0, rel=0.01)  # not 10
    assert rec["tiling"]["chip_size"] == round(32 * 10 / rec["tiling"]["scene_gsd_m"])
    assert any("scale factor 2" in r.getMessage() for r in records)
    gdf = gpd.read_file(out / "merc60_regions.gpkg")
    with rasterio.open(scene) as ds:
        areas = _pixel_areas_3857(ds.transform, ds.height, ds.width)
        ids = rasterize(
            zip(gdf.geometry, gdf["region_id"], strict=True), out_shape=ds.shape, transform=ds.transform
        )
    want = np.array([areas[ids == rid].sum() for rid in gdf["region_id"]])
    assert np.allclose(gdf["area_m2"], want, rtol=1e-6)
    planar = gdf["area_px"] * 100.0
    assert (planar / gdf["area_m2"]).between(3.9, 4.1).all()  # what was reported before


def test_tiny_pixels_keep_significant_area_digits(bundle, tmp_path, capsys, caplog):
    """1 cm pixels (issue item 5): areas of 1e-4 m2 per pixel, not rounded to 0.1 m2."""
    import geopandas as gpd

    scene = _blocky_rgb(tmp_path / "drone.tif", 64, 0.01, seed=5, block=4)
    out = tmp_path / "out"
    args = ["run", str(scene), "--model", str(bundle), "--out", str(out), "--no-match-resolution"]
    rc, _, err, _ = run_geosam([*args, "--min-region-area", "1"], capsys, caplog)
    assert rc == 0, err
    gdf = gpd.read_file(out / "drone_regions.gpkg")
    assert len(gdf) > 5 and (gdf["area_m2"] > 0).all()
    assert np.allclose(gdf["area_m2"], gdf["area_px"] * 1e-4 / 0.9996**2, rtol=1e-5)


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857", "EPSG:2264", "EPSG:32633"])
def test_same_ground_gives_the_same_gsd_and_area_in_any_crs(crs, bundle, tmp_path, capsys, caplog):
    import geopandas as gpd

    utm = _blocky_rgb(tmp_path / "utm.tif", 80, 10.0, seed=7, block=10)
    # about 10 m on the ground in each CRS's own units (at 45.1 N)
    coslat = math.cos(math.radians(45.1))
    res = {
        "EPSG:4326": (10 / 111_320 / coslat, 10 / 111_140),
        "EPSG:3857": 10 / coslat,
        "EPSG:2264": 10 / 0.3048,
    }
    scene = utm if crs == "EPSG:32633" else warp(utm, tmp_path / "other.tif", crs, resolution=res[crs])
    with rasterio.open(scene) as ds:
        from geosam.io.read import open_scene

        gsd = open_scene(scene).gsd_m
        valid = (ds.read_masks() > 0).all(axis=0)
    assert gsd == pytest.approx(10.0, rel=0.02)  # same ground, whatever the CRS
    out = tmp_path / "out"
    rc, _, err, records = run_geosam(
        ["run", str(scene), "--model", str(bundle), "--out", str(out)], capsys, caplog
    )
    assert rc == 0, err
    assert any("chips of" in r.getMessage() for r in records), "matched, and the choice logged"
    gdf = gpd.read_file(out / f"{scene.stem}_regions.gpkg")
    ground = 800 * 800 / 0.9996**2  # the UTM scene's ground area at the central meridian
    covered = gdf["area_m2"].sum() / gdf["area_px"].sum() * valid.sum()
    assert covered == pytest.approx(ground, rel=0.03)


@pytest.mark.shared
def test_naip_ground_in_lonlat_and_utm_is_matched_alike(shared_data, bundle, tmp_path, capsys, caplog):
    naip = crop(
        shared_data / "scenes" / "naip" / "m_4709963_se_14_1_20190904.tif",
        tmp_path / "n.tif",
        200,
        200,
        120,
        120,
        bands=[1, 2, 3],
    )
    utm = relabel(
        naip,
        tmp_path / "naip_utm.tif",
        crs="EPSG:26914",
        transform=rasterio.open(naip).transform,
        colorinterp=["red", "green", "blue"],
    )
    ll = warp(utm, tmp_path / "naip_ll.tif", "EPSG:4326")
    chips = {}
    for scene in (utm, ll):
        out = tmp_path / scene.stem
        rc, _, err, _ = run_geosam(
            ["run", str(scene), "--model", str(bundle), "--out", str(out)], capsys, caplog
        )
        assert rc == 0, err
        t = json.loads((out / f"{scene.stem}_run.json").read_text())["tiling"]
        chips[scene.stem] = t["chip_size"] * t["scene_gsd_m"]  # ground per chip edge
    assert chips["naip_ll"] == pytest.approx(chips["naip_utm"], rel=0.08)
    assert chips["naip_utm"] == pytest.approx(320, rel=0.05)


def _agreement(a_path, b_path):
    """Share of a's valid pixels where b, resampled (nearest) onto a's grid, has the same class."""
    from rasterio.warp import Resampling, reproject

    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        mine = a.read(1)
        theirs = np.full(mine.shape, 255, np.uint8)
        reproject(
            rasterio.band(b, 1),
            theirs,
            dst_transform=a.transform,
            dst_crs=a.crs,
            src_nodata=255,
            dst_nodata=255,
            resampling=Resampling.nearest,
        )
    both = (mine != 255) & (theirs != 255)
    return float((mine[both] == theirs[both]).mean())


@pytest.mark.slow
@pytest.mark.shared
def test_default_model_classifies_the_same_ground_in_lonlat_like_in_utm(
    shared_data, tmp_path, capsys, caplog
):
    """Issue 11 item 3 with the packaged model: Olinda (8 S, pixels square on the ground in lon/lat too)
    in UTM 25S, warped to EPSG:4326 and to UTM 24S (the control: two UTM runs of the same ground).
    Measured on a 300 x 300 crop: lon/lat vs UTM 67.9 %, UTM 24S vs UTM 25S 66.9 %; before ground GSDs
    the lon/lat scene was not matched (64 px chips of 28.5 m) and agreed 53.4 %. Slow: three runs of
    the packaged model (run with -m slow)."""
    utm = crop(
        shared_data / "scenes" / "olinda" / "L7_ETMs.tif",
        tmp_path / "o_utm.tif",
        20,
        20,
        160,
        160,
        bands=[3, 2, 1],
    )
    with rasterio.open(utm, "r+") as ds:
        ds.colorinterp = [rasterio.enums.ColorInterp[c] for c in ("red", "green", "blue")]
    scenes = [
        utm,
        warp(utm, tmp_path / "o_ll.tif", "EPSG:4326"),
        warp(utm, tmp_path / "o_ctl.tif", "EPSG:32724"),
    ]
    for scene in scenes:
        rc, _, err, _ = run_geosam(["run", str(scene), "--out", str(tmp_path / scene.stem)], capsys, caplog)
        assert rc == 0, err
    classes = [tmp_path / s.stem / f"{s.stem}_classes.tif" for s in scenes]
    lonlat, control = _agreement(classes[0], classes[1]), _agreement(classes[0], classes[2])
    assert lonlat >= control - 0.03, (lonlat, control)
