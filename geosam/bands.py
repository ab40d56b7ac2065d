"""Band names: one canonical spelling per spectral band, and choosing a scene's bands for a model.

Models name the bands they expect (``("red", "green", "blue")`` for SAM); scenes name theirs in band
descriptions or colour interpretation, in many spellings (``B04``, ``Red``, ``SR_B4``, ``lsat7_2000_30``).
:func:`canonical_band_name` maps the spellings geosam knows onto canonical names close to the STAC
``eo:common_name`` vocabulary, and :func:`resolve_bands` uses it to find a model's bands in a scene.

Canonical names: ``coastal, blue, green, red, rededge1, rededge2, rededge3, nir, nir08, nir09, cirrus,
swir1, swir2, swir, lwir, pan, alpha``.

Known spellings (case, spaces, ``_`` and ``-`` are ignored):

* common words: ``red``, ``Near infrared``, ``NIR``, ``SWIR 1``, ``swir16``/``swir22`` (STAC),
  ``rededge071``..., ``panchromatic``, ``thermal``;
* Sentinel-2 band ids: ``B01``..``B12`` and ``B8A`` (zero-padded, as in ESA products: ``B02`` blue,
  ``B03`` green, ``B04`` red, ``B08`` nir, ``B8A`` nir08, ``B11`` swir1, ``B12`` swir2), and the
  unpadded ``B2``... when prefixed by ``S2``/``Sentinel2`` (``S2_B4``);
* Landsat band ids with a sensor prefix, because the numbering differs between sensors: ``LC08``/
  ``L8``/``Landsat8`` (and 9, OLI: ``B4`` red, ``B5`` nir...) and ``LE07``/``LT05``/``L7``/``Landsat7``
  (TM/ETM+: ``B3`` red, ``B4`` nir, ``B7`` swir2...), e.g. ``LC08_SR_B4``; GRASS names such as
  ``lsat7_2000_40`` (TM/ETM+ band 4 = nir).

An unprefixed ``B4`` is *not* guessed: it is red on Sentinel-2 and Landsat 8 but near infrared on
Landsat 5/7. Unknown names are returned lower-cased without separators and only match themselves.

Unnamed bands. A raster whose bands carry no name geosam recognises (no description, colour
interpretation gray or undefined) says nothing about what its bands hold. When it has exactly as many
bands as the model wants (alpha bands aside), they are read in file order, *with a warning* on every run
that names the order assumed and the two ways to settle it: ``--bands`` (``--bands 3,2,1`` for a file
stored blue, green, red) or colour interpretation written into the file (``rio edit-info
--colorinterp red,green,blue``). With any other band count geosam refuses and asks for ``--bands``.

Every ``--bands`` that an error message suggests selects as many bands as the model takes, all of
them present in the raster (:func:`example_bands`), so the suggestion runs as written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from geosam.errors import BandError
from geosam.types import SceneInfo

__all__ = ["CANONICAL_BANDS", "canonical_band_name", "describe_bands", "example_bands", "resolve_bands"]

log = logging.getLogger(__name__)

CANONICAL_BANDS: tuple[str, ...] = (
    "coastal",
    "blue",
    "green",
    "red",
    "rededge1",
    "rededge2",
    "rededge3",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir1",
    "swir2",
    "swir",
    "lwir",
    "pan",
    "alpha",
)

# Keys are compact names: lower case, only letters and digits.
_ALIASES: dict[str, str] = {
    **{c: c for c in CANONICAL_BANDS},
    # words
    "coastalaerosol": "coastal",
    "aerosol": "coastal",
    "ultrablue": "coastal",
    "r": "red",
    "g": "green",
    "b": "blue",
    "rededge": "rededge1",
    "re1": "rededge1",
    "re2": "rededge2",
    "re3": "rededge3",
    "rededge071": "rededge1",
    "rededge075": "rededge2",
    "rededge078": "rededge3",
    "nearinfrared": "nir",
    "nearir": "nir",
    "infrared": "nir",
    "nirnarrow": "nir08",
    "narrownir": "nir08",
    "watervapor": "nir09",
    "watervapour": "nir09",
    "swir16": "swir1",
    "swir22": "swir2",
    "shortwaveinfrared1": "swir1",
    "shortwaveinfrared2": "swir2",
    "swir11": "swir1",
    "swir12": "swir2",
    "thermal": "lwir",
    "tir": "lwir",
    "thermalinfrared": "lwir",
    "longwaveinfrared": "lwir",
    "panchromatic": "pan",
    # Sentinel-2 (zero-padded ids as in ESA SAFE products)
    "b01": "coastal",
    "b02": "blue",
    "b03": "green",
    "b04": "red",
    "b05": "rededge1",
    "b06": "rededge2",
    "b07": "rededge3",
    "b08": "nir",
    "b8a": "nir08",
    "b09": "nir09",
    "b10": "cirrus",
    "b11": "swir1",
    "b12": "swir2",
}

_SENTINEL2 = {
    "1": "coastal",
    "2": "blue",
    "3": "green",
    "4": "red",
    "5": "rededge1",
    "6": "rededge2",
    "7": "rededge3",
    "8": "nir",
    "8a": "nir08",
    "9": "nir09",
    "10": "cirrus",
    "11": "swir1",
    "12": "swir2",
}
_OLI = {
    "1": "coastal",
    "2": "blue",
    "3": "green",
    "4": "red",
    "5": "nir",
    "6": "swir1",
    "7": "swir2",
    "8": "pan",
    "9": "cirrus",
    "10": "lwir",
    "11": "lwir",
}
_TM = {"1": "blue", "2": "green", "3": "red", "4": "nir", "5": "swir1", "6": "lwir", "7": "swir2", "8": "pan"}

# (pattern on the compact name, band table); the band id is the last group.
_PREFIXED: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (re.compile(r"^(?:s2[abc]?|sentinel2[abc]?|msi)[a-z0-9]*?b0?(\d{1,2}|8a)$"), _SENTINEL2),
    (re.compile(r"^(?:lc0?[89]|l[89]|landsat[89]|oli)[a-z0-9]*?b0?(\d{1,2})$"), _OLI),
    (re.compile(r"^(?:le0?7|lt0?[45]|l[457]|landsat[457]|etm|tm)[a-z0-9]*?b0?(\d{1,2})$"), _TM),
)
# GRASS GIS Landsat rasters: lsat7_2002_10, lsat5_1987_40 (band number x 10; 61/62 thermal gains).
_GRASS = re.compile(r"^lsat[457]_\d{4}_(\d)\d$")


def _compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.strip().lower())


def canonical_band_name(name: str) -> str:
    """Return the canonical name of a band spelling, or the compacted spelling when unknown.

    >>> canonical_band_name("B04"), canonical_band_name("Near Infrared"), canonical_band_name("LC08_SR_B5")
    ('red', 'nir', 'nir')
    >>> canonical_band_name("lsat7_2000_70"), canonical_band_name("My Band")
    ('swir2', 'myband')
    """
    raw = name.strip().lower()
    grass = _GRASS.match(raw)
    if grass:
        return _TM.get(grass.group(1), _compact(name))
    key = _compact(name)
    if key in _ALIASES:
        return _ALIASES[key]
    for pattern, table in _PREFIXED:
        m = pattern.match(key)
        if m and m.group(1) in table:
            return table[m.group(1)]
    return key


def describe_bands(info: SceneInfo) -> str:
    """One line listing a scene's bands, e.g. ``1 'red', 2 'green', 3 (unnamed)``."""
    return ", ".join(
        f"{i} {name!r}" if name else f"{i} (unnamed)" for i, name in enumerate(info.band_names, start=1)
    )


def example_bands(count: int, n: int) -> str:
    """A ``--bands`` value selecting ``n`` bands that exist in a ``count``-band raster.

    The first ``n`` bands in file order; with fewer bands than ``n``, the last one repeats (a grey band
    standing for red, green and blue).

    >>> example_bands(5, 3), example_bands(1, 3), example_bands(2, 3), example_bands(2, 1)
    ('1,2,3', '1,1,1', '1,2,2', '1')
    """
    return ",".join(str(min(i, max(1, count))) for i in range(1, max(1, n) + 1))


def _too_few_bands(info: SceneInfo, wanted: Sequence[str]) -> str:
    """The sentence for a raster with fewer bands than the model takes, with a hint that runs."""
    n, count = len(wanted), info.count
    hint = example_bands(count, n)
    repeat = "a grey band can stand for all of them" if count == 1 else "bands can be repeated"
    return (
        f"the model expects {n} bands ({', '.join(wanted)}) but the raster has only {count} "
        f"({describe_bands(info)}); {repeat}: --bands {hint} (classes are less reliable than from the "
        "bands the model was trained on), or use a model trained on this raster's bands "
        "(docs/training.md)"
    )


def _find(info: SceneInfo, name: str, n: int) -> int | None:
    """The band named ``name`` (any spelling), ``None`` if none; ``n`` bands are being selected."""
    want = canonical_band_name(name)
    hits = [
        i for i, b in enumerate(info.band_names, start=1) if b is not None and canonical_band_name(b) == want
    ]
    if len(hits) > 1:
        raise BandError(
            f"band name {name!r} matches bands {hits}; pass --bands with indexes, e.g. --bands "
            f"{example_bands(info.count, n)} (bands: {describe_bands(info)})",
            info.path,
        )
    return hits[0] if hits else None


def _select(info: SceneInfo, bands: Sequence[int | str], n: int) -> tuple[int, ...]:
    """Band indexes of an explicit selection; ``n`` is how many bands the model takes (for hints)."""
    out: list[int] = []
    example = example_bands(info.count, n)
    for b in bands:
        if isinstance(b, bool):
            raise BandError(f"band {b!r} is neither an index nor a name", info.path)
        if isinstance(b, int) or (isinstance(b, str) and b.strip().isdigit()):
            i = int(b)
            if not 1 <= i <= info.count:
                raise BandError(
                    f"band {i} does not exist; band indexes start at 1 and this raster has "
                    f"{info.count} band(s): {describe_bands(info)}; e.g. --bands {example}",
                    info.path,
                )
            out.append(i)
            continue
        found = _find(info, str(b), n)
        if found is None:
            raise BandError(
                f"no band named {b!r} (read as {canonical_band_name(str(b))!r}); the raster has "
                f"{describe_bands(info)}; pass --bands with indexes, e.g. --bands {example}",
                info.path,
            )
        out.append(found)
    return tuple(out)


def resolve_bands(
    info: SceneInfo,
    bands: Sequence[int | str] | None = None,
    wanted: Sequence[str] | None = None,
) -> tuple[int, ...]:
    """Choose the scene bands to read, as 1-based indexes in the order the model wants them.

    Rules, in order:

    1. ``bands`` given (from ``--bands`` or the run config): each entry is a 1-based index (``3`` or
       ``"3"``) or a band name matched through :func:`canonical_band_name` (``"B04"`` finds a band
       described as ``red``). When ``wanted`` is given too, the counts must agree.
    2. ``wanted`` given: every wanted name is looked up in the scene's band names.
    3. Otherwise, when no scene band has a name geosam recognises and the scene has exactly
       ``len(wanted)`` bands besides alpha bands, the bands are taken in file order (a 3-band unnamed
       image is read as the model's three bands) and a warning says so, with the ``--bands`` that
       settles it (see the module docstring).
    4. Neither given: all bands in file order, except alpha bands.

    Args:
        info: The scene header (:func:`geosam.io.read.open_scene`).
        bands: Explicit selection by index or name.
        wanted: The model's band names, in model order.

    Returns:
        1-based band indexes, one per model input band.

    Raises:
        BandError: A band does not exist, a name is missing or ambiguous, or the bands cannot be matched
            to the model; the message lists the scene's bands and suggests ``--bands``.
    """
    if bands is not None:
        if len(bands) == 0:
            raise BandError("the band selection is empty", info.path)
        chosen = _select(info, bands, len(wanted) if wanted is not None else len(bands))
        if wanted is not None and len(chosen) != len(wanted):
            raise BandError(
                f"the model expects {len(wanted)} bands ({', '.join(wanted)}) but {len(chosen)} "
                f"{'was' if len(chosen) == 1 else 'were'} selected ({', '.join(map(str, bands))}); "
                f"give one scene band per model band, e.g. --bands {example_bands(info.count, len(wanted))}",
                info.path,
            )
        return chosen
    if wanted is None:
        return tuple(
            i
            for i, n in enumerate(info.band_names, start=1)
            if n is None or canonical_band_name(n) != "alpha"
        )
    found = [_find(info, w, len(wanted)) for w in wanted]
    if all(f is not None for f in found):
        return tuple(f for f in found if f is not None)
    named = [
        canonical_band_name(n) if n is not None else None for n in info.band_names
    ]  # canonical names, None where unnamed
    known = [n for n in named if n is not None and n in CANONICAL_BANDS and n != "alpha"]
    data_bands = [i for i, n in enumerate(named, start=1) if n != "alpha"]
    if not known and len(data_bands) == len(wanted):
        if len(wanted) > 1:  # one band has no order to get wrong
            _warn_file_order(info, data_bands, wanted)
        return tuple(data_bands)
    if info.count < len(wanted) and not known:
        raise BandError(_too_few_bands(info, wanted), info.path)
    missing = [w for w, f in zip(wanted, found, strict=True) if f is None]
    if len(missing) == len(wanted):  # nothing matched by name: the bands may be there, unnamed
        raise BandError(
            f"cannot find the model's bands {', '.join(missing)} among the raster's {info.count} band(s): "
            f"{describe_bands(info)}; pass --bands with one scene band per model band in the model's "
            f"order, e.g. --bands {example_bands(info.count, len(wanted))}",
            info.path,
        )
    # some bands matched by name: the example keeps them and leaves a placeholder for each missing band,
    # never a copy of another band, which would run but feed the model the wrong light
    example = ",".join(str(f) if f is not None else f"<{w}>" for w, f in zip(wanted, found, strict=True))
    raise BandError(
        f"cannot find the model's bands {', '.join(missing)} (it expects {', '.join(wanted)}) among the "
        f"raster's {info.count} band(s): {describe_bands(info)}; if the scene holds them under other "
        f"names, pass --bands with one scene band per model band in the model's order (--bands {example}); "
        "if it does not, this model cannot classify it: use one trained on the bands the scene has",
        info.path,
    )


def _warn_file_order(info: SceneInfo, bands: Sequence[int], wanted: Sequence[str]) -> None:
    """The loud warning of rule 3: unnamed bands are read in file order (see the module docstring)."""
    order = ",".join(map(str, bands))
    reverse = ",".join(map(str, reversed(bands)))
    interp = _colorinterp_names(wanted)
    in_file = (
        f", or record it in the file: rio edit-info --colorinterp {','.join(interp)} {info.path}"
        if interp is not None
        else ""
    )
    log.warning(
        "%s: bands %s have no names and no colour interpretation, so geosam reads them as %s in file "
        "order. If the file stores them otherwise, pass the right order (--bands %s for %s); pass "
        "--bands %s to confirm this order and silence this warning%s",
        info.path,
        ", ".join(map(str, bands)),
        ", ".join(wanted),
        reverse,
        ", ".join(reversed(wanted)),
        order,
        in_file,
    )


def _colorinterp_names(wanted: Sequence[str]) -> list[str] | None:
    """GDAL colour interpretation names that geosam reads back as ``wanted`` (``None`` if one has none).

    Only names that are also colour interpretations qualify (``red``, ``green``, ``blue``, ``nir``...),
    so ``rio edit-info --colorinterp`` with them makes the bands findable by name.
    """
    from rasterio.enums import ColorInterp

    names = [canonical_band_name(w) for w in wanted]
    if any(n not in ColorInterp.__members__ or n in ("alpha", "undefined", "gray") for n in names):
        return None
    return names
