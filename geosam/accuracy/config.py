"""``geosam evaluate`` configuration (pydantic, ``extra="forbid"``); its fields are the command's options."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geosam.errors import ConfigError

__all__ = ["EvaluateConfig"]


class EvaluateConfig(BaseModel):
    """How a class map is compared with reference data.

    Attributes:
        field: Class field of a vector reference (``None``: ``class_name``, ``class``, ``label``,
            ``landcover``... whichever exists, else the only text field).
        layer: Layer of a multi-layer vector file (GeoPackage); ``None``: the first.
        where: OGR SQL ``WHERE`` clause selecting reference features, e.g. held-out polygons
            (``"fold = 3"``); ``None``: all.
        classes: Class-mapping file (YAML/CSV) or the name of a packaged one (``eurosat_to_raleigh``);
            ``None``: classes are matched by name as they are.
        reference_nodata: A label-raster value meaning "no label" besides the raster's own nodata.
        drop_unmatched: Leave out reference units whose class the map does not have (default: keep them
            as errors of the map).
        confidence: Level of the confidence intervals of the area-weighted estimates.
        window_size: Edge of the square map windows read at a time (pixels); bounds memory.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str | None = None
    layer: str | None = None
    where: str | None = None
    classes: str | None = None
    reference_nodata: float | None = None
    drop_unmatched: bool = False
    confidence: float = Field(0.95, gt=0, lt=1)
    window_size: int = Field(1024, ge=16, le=16384)

    @classmethod
    def build(cls, **options: Any) -> EvaluateConfig:
        """Validate options (``None`` means "default"); errors are :class:`ConfigError` naming each key."""
        from geosam.config_io import format_validation_error

        try:
            return cls.model_validate({k: v for k, v in options.items() if v is not None})
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, what="evaluate option")) from None
