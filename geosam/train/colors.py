"""Default colours of class maps trained by geosam: well-known land-cover names, else a palette."""

from __future__ import annotations

__all__ = ["KNOWN_COLORS", "class_colors"]


#: Colours for well-known land-cover class names (EuroSAT and common legends); others get a palette.
KNOWN_COLORS: dict[str, tuple[int, int, int]] = {
    "annualcrop": (230, 200, 80),
    "agriculture": (230, 200, 80),
    "cropland": (230, 200, 80),
    "forest": (34, 120, 50),
    "trees": (34, 120, 50),
    "herbaceousvegetation": (150, 200, 90),
    "herbaceous": (150, 200, 90),
    "grassland": (150, 200, 90),
    "highway": (120, 120, 120),
    "road": (120, 120, 120),
    "industrial": (160, 60, 160),
    "pasture": (80, 200, 170),  # sea green: CIEDE2000 20.6 from herbaceous (was 7.9 with (190, 230, 120))
    "permanentcrop": (200, 140, 60),
    "residential": (220, 60, 50),
    "developed": (220, 60, 50),
    "built": (220, 60, 50),
    "urban": (220, 60, 50),
    "river": (60, 120, 230),
    "sealake": (20, 60, 170),
    "water": (30, 90, 200),
    "shrubland": (140, 150, 70),
    "sediment": (210, 190, 150),
    "bare": (210, 190, 150),
    "barren": (210, 190, 150),
}


def class_colors(classes: tuple[str, ...]) -> list[tuple[int, int, int]]:
    """Each class's colour: :data:`KNOWN_COLORS` by its name (letters, digits, any case), else a palette."""
    from geosam.types import ClassScheme

    fallback = ClassScheme(classes).colors
    out = []
    for i, c in enumerate(classes):
        key = "".join(ch for ch in c.lower() if ch.isalnum())
        out.append(KNOWN_COLORS.get(key, fallback[i]))
    return out
