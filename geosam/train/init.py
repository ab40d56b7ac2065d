"""Warm starts: begin training from another bundle's weights (``TrainConfig.init_from``)."""

from __future__ import annotations

import logging
from typing import Any

from geosam.errors import DataError
from geosam.train.config import TrainConfig
from geosam.train.data import ChipData

__all__ = ["init_bundle", "with_init_input_size"]

log = logging.getLogger(__name__)


def _not_a_bundle(cfg: TrainConfig) -> DataError:
    return DataError(
        "init_from is not a geosam model bundle (a folder with model.json and weights.safetensors "
        "written by `geosam train`): pass such a folder, e.g. geosam/data/default_model, or train "
        "without --init-from",
        cfg.init_from,
    )


def with_init_input_size(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the ``init_from`` bundle's input size when the user set none.

    A warm start continues at the size the bundle was trained at; another ``input_size`` interpolates
    its position tables. Reads only the bundle's ``model.json``.

    Raises:
        DataError: ``init_from`` is not a readable model bundle.
    """
    if cfg.init_from is None or cfg.input_size is not None:
        return cfg
    from geosam.errors import GeosamError
    from geosam.models.bundle import read_bundle_meta

    try:
        meta = read_bundle_meta(cfg.init_from)
    except GeosamError:
        raise _not_a_bundle(cfg) from None
    log.info("init_from %s: continuing at its input size, %d px", cfg.init_from, meta.input_size)
    return cfg.model_copy(update={"input_size": meta.input_size})


def init_bundle(cfg: TrainConfig, data: ChipData) -> Any:
    """Load ``cfg.init_from`` (a ``LoadedBundle``) after checking that it fits ``data``; ``None`` if unset.

    Raises:
        DataError: The bundle's classes or bands are not the data's, or its encoder is not the one
            ``cfg.backbone`` builds.
    """
    if cfg.init_from is None:
        return None
    from geosam.bands import canonical_band_name
    from geosam.errors import GeosamError
    from geosam.models.bundle import load_bundle

    try:
        init = load_bundle(cfg.init_from, img_size=cfg.input_size)  # position tables interpolated to it
    except GeosamError:
        raise _not_a_bundle(cfg) from None
    bands = [canonical_band_name(b) for b in data.bands]
    if list(init.meta.class_scheme.names) != list(data.classes) or init.meta.bands != bands:
        raise DataError(
            f"init_from bundle has classes {list(init.meta.class_scheme.names)} and bands "
            f"{init.meta.bands}, the data {list(data.classes)} and {bands}: start from a bundle trained "
            "on the same classes and bands, or train without init_from",
            cfg.init_from,
        )
    if init.meta.encoder.source != "bundle" or init.meta.encoder.config.get("name") != cfg.backbone:
        raise DataError(
            f"init_from bundle's encoder is not a {cfg.backbone!r} encoder stored in the bundle; "
            "set backbone to its encoder or train without init_from",
            cfg.init_from,
        )
    prev = init.meta.training.get("config", {})
    if (prev.get("seed"), prev.get("val_fraction")) != (cfg.seed, cfg.val_fraction):
        log.warning(
            "init_from bundle was trained with seed %s, val_fraction %s: this run's validation chips may "
            "be ones it was trained on",
            prev.get("seed"),
            prev.get("val_fraction"),
        )
    log.info(
        "starting from %s (%s, weights sha256 %s...) at %s px encoder input",
        cfg.init_from,
        init.meta.name,
        init.meta.weights_sha256[:12],
        cfg.input_size or data.chip_size,
    )
    return init
