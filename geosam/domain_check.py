"""A scene's verdict from its chips' domain scores: the report, the run's WARNING, the record entry.

:mod:`geosam.domain` scores each encoder chip against the model's domain statistics; this module
summarises a scene's (or a tile's) scores: the share of chips above the in-domain threshold, the
median score, the verdict (:attr:`DomainReport.verdict`: ``out_of_domain`` when more than
``scene_share`` of its chips are above the threshold, ``partly_out_of_domain`` when at least
``partly_share`` and at least :data:`~geosam.domain.MIN_CHIPS_OUT` of them are, else ``in_domain``),
the one WARNING line a run logs for the first two, the note for the QGIS project and the run record's
``domain`` entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from geosam.domain import MIN_CHIPS_OUT, DomainStats

__all__ = ["DomainReport", "check_scene", "record_entry", "scene_report", "tile_ratios", "tile_shares"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DomainReport:
    """How a scene (or tile) scores against the model's domain statistics.

    Attributes:
        n_chips: Scored chips.
        median_score: Median chip score.
        threshold: The model's chip threshold.
        share_out: Share of chips scoring above the threshold.
        scene_share: The share above which the scene is out of domain.
        partly_share: The share from which (with at least :data:`~geosam.domain.MIN_CHIPS_OUT`
            chips) the scene is partly out of domain.
        quantile: The held-out in-domain quantile the threshold was taken at (``1 - quantile`` of
            chips like the training data score above it).
    """

    n_chips: int
    median_score: float
    threshold: float
    share_out: float
    scene_share: float
    partly_share: float = 0.25
    quantile: float = 0.95

    @property
    def n_out(self) -> int:
        """Chips scoring above the threshold."""
        return round(self.share_out * self.n_chips)

    @property
    def out_of_domain(self) -> bool:
        """More than ``scene_share`` and at least ``MIN_CHIPS_OUT`` of the chips are unlike the training data.

        A scene of a few chips is not judged on them: each in-domain chip exceeds the threshold with
        probability ``1 - quantile``, so a one-chip scene would be flagged about one time in twenty.
        """
        return self.n_chips > 0 and self.share_out > self.scene_share and self.n_out >= MIN_CHIPS_OUT

    @property
    def too_few_chips(self) -> bool:
        """Fewer than ``MIN_CHIPS_OUT`` chips scored: too few for either verdict."""
        return self.n_chips < MIN_CHIPS_OUT

    @property
    def partly_out_of_domain(self) -> bool:
        """Not out of domain, but at least ``partly_share`` and ``MIN_CHIPS_OUT`` chips are unlike it."""
        return not self.out_of_domain and self.share_out >= self.partly_share and self.n_out >= MIN_CHIPS_OUT

    @property
    def verdict(self) -> str:
        """``out_of_domain``, ``partly_out_of_domain`` or ``in_domain``."""
        if self.out_of_domain:
            return "out_of_domain"
        return "partly_out_of_domain" if self.partly_out_of_domain else "in_domain"

    @property
    def ratio(self) -> float:
        """Median chip score over the threshold (> 1: the typical chip is unlike the training data)."""
        return self.median_score / self.threshold if self.threshold > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (run record, STAC item)."""
        return {
            "method": "mahalanobis_tied",
            "out_of_domain": self.out_of_domain,
            "partly_out_of_domain": self.partly_out_of_domain,
            "verdict": self.verdict,
            "chips": self.n_chips,
            "median_score": round(self.median_score, 4),
            "threshold": round(self.threshold, 4),
            "ratio": round(self.ratio, 3) if np.isfinite(self.ratio) else None,
            "share_out": round(self.share_out, 4),
            "scene_share": self.scene_share,
            "partly_share": self.partly_share,
        }

    def note(self) -> str:
        """One sentence for people (QGIS project abstract, layer notes)."""
        pct = 100 * self.share_out
        if self.out_of_domain:
            return (
                f"WARNING: this scene is unlike the model's training data ({pct:.0f} % of its chips score "
                f"above the in-domain threshold; median domain score {self.median_score:.2f} = "
                f"{self.ratio:.1f}x the threshold {self.threshold:.2f}): classes and confidences may be "
                "wrong."
            )
        if self.partly_out_of_domain:
            return (
                f"WARNING: this scene is partly unlike the model's training data ({pct:.0f} % of its chips "
                f"score above the in-domain threshold, where about {self._expected_pct:.0f} % of chips like "
                "the training data do): classes and confidences may be wrong there (the tiles layer's "
                "domain_share_out shows where)."
            )
        if self.too_few_chips:
            return (
                f"Only {self.n_chips} chip(s) scored: too few to judge whether the scene resembles the "
                f"model's training data ({pct:.0f} % above the in-domain threshold; median domain score "
                f"{self.median_score:.2f}, threshold {self.threshold:.2f})."
            )
        return (
            f"The scene resembles the model's training data ({pct:.0f} % of its chips above the in-domain "
            f"threshold; median domain score {self.median_score:.2f}, threshold {self.threshold:.2f})."
        )

    @property
    def _expected_pct(self) -> float:
        """Percentage of chips like the training data above the threshold (its quantile's complement)."""
        return 100.0 * (1.0 - self.quantile)

    def warning(self, scene: str, model: str) -> str:
        """The run's one WARNING line: the numbers and what to do."""
        what = "partly unlike" if self.partly_out_of_domain else "unlike"
        where = " (the tiles layer's domain_share_out shows where)" if self.partly_out_of_domain else ""
        return (
            f"{scene}: {what} the training data of model {model!r}: {100 * self.share_out:.0f} % of "
            f"{self.n_chips} chips score above the in-domain threshold, where about "
            f"{self._expected_pct:.0f} % of chips like the training data do (median domain score "
            f"{self.median_score:.2f}, {self.ratio:.1f}x the threshold {self.threshold:.2f}); classes and "
            f"confidences may be wrong{where}. Check the bands, resolution and preprocessing, or fine-tune "
            "on labels of this imagery: `geosam train polygons SCENE LABELS --field CLASS --out "
            "my_model`, then `geosam run SCENE --model my_model` (docs/training.md)"
        )


def record_entry(
    report: DomainReport | None, has_stats: bool, region_source: str, *, shared_encoder: bool = False
) -> dict[str, Any]:
    """The run record's ``domain`` entry: the report, or why the scene was not scored.

    ``shared_encoder``: the classifier's encoder is the region model's (SAM 2 shared mode), so it
    encoded whole tiles.
    """
    if report is not None:
        return {**report.to_dict(), "note": report.note()}
    if not has_stats:
        why = (
            "the model bundle has no domain statistics (a chip classifier gets them from `geosam calibrate "
            "BUNDLE --data CHIP_FOLDER`; a dense head trained with `geosam train polygons|raster` has none: "
            "check its maps with `geosam evaluate` on held-out labels)"
        )
    elif region_source == "sam" or shared_encoder:
        why = "the classifier encodes whole SAM tiles, not chips like the model's training chips"
    else:
        why = "no encoder chip was at least half valid"
    return {"out_of_domain": None, "note": f"not scored: {why}"}


def scene_report(scores: np.ndarray, stats: DomainStats) -> DomainReport:
    """Summarise the chip scores of a scene (or a tile) against ``stats``."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) == 0:
        return DomainReport(
            0, float("nan"), stats.threshold, 0.0, stats.scene_share, stats.partly_share, stats.quantile
        )
    return DomainReport(
        n_chips=len(s),
        median_score=float(np.median(s)),
        threshold=stats.threshold,
        share_out=float(np.mean(s > stats.threshold)),
        scene_share=stats.scene_share,
        partly_share=stats.partly_share,
        quantile=stats.quantile,
    )


def check_scene(
    tile_scores: Mapping[int, np.ndarray], stats: DomainStats | None, scene: str, model: str
) -> DomainReport | None:
    """The scene's report from its tiles' chip scores; logs one WARNING when it is (partly) out of domain.

    Args:
        tile_scores: Tile index -> ``(n,)`` chip scores (empty arrays for unscored tiles).
        stats: The model's domain statistics (``None``: nothing to check).
        scene: Scene name for the message.
        model: Model name for the message.

    Returns:
        ``None`` when nothing was scored (no statistics, or no tile with a scored chip).
    """
    scores = [s for s in tile_scores.values() if len(s)]
    if stats is None or not scores:
        return None
    report = scene_report(np.concatenate(scores), stats)
    if report.verdict != "in_domain":
        log.warning("%s", report.warning(scene, model))
    return report


def tile_ratios(
    tile_scores: Mapping[int, np.ndarray], stats: DomainStats | None
) -> dict[int, float | None] | None:
    """Per tile: median chip score over the threshold (> 1: unlike the training data); ``None``: unscored."""
    return _per_tile(tile_scores, stats, lambda s, t: float(np.median(s)) / t)


def tile_shares(
    tile_scores: Mapping[int, np.ndarray], stats: DomainStats | None
) -> dict[int, float | None] | None:
    """Per tile: the share of its chips above the threshold (where a partly unlike scene departs)."""
    return _per_tile(tile_scores, stats, lambda s, t: float(np.mean(s > t)))


def _per_tile(
    tile_scores: Mapping[int, np.ndarray],
    stats: DomainStats | None,
    summary: Callable[[np.ndarray, float], float],
) -> dict[int, float | None] | None:
    """``summary(scores, threshold)`` per scored tile, ``None`` per unscored one; ``None``: none scored."""
    if stats is None or not any(len(s) for s in tile_scores.values()):
        return None
    return {i: summary(s, stats.threshold) if len(s) else None for i, s in tile_scores.items()}
