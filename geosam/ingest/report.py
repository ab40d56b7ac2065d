"""What one ingest run saw and did (:class:`IngestReport`), and why each scene was or was not processed."""

from __future__ import annotations

from dataclasses import dataclass, field

from geosam.batch import SceneOutcome

__all__ = ["IngestReport", "SceneDecision"]


@dataclass(frozen=True)
class SceneDecision:
    """What a run does with one scene it found, and why.

    Attributes:
        key: The scene's manifest key (path relative to the inbox, or absolute).
        process: Whether this run processes it.
        reason: Why, in words: ``new``, ``content changed``, ``retry 2 of 3 after ...``; or why not:
            ``done, unchanged since ...``, ``modified 12 s ago; ...min_age_s...``, ``failed with an
            input error ...``.
    """

    key: str
    process: bool
    reason: str

    def line(self) -> str:
        """``would process: KEY (reason)`` or ``not processed: KEY: reason``."""
        return (
            f"would process: {self.key} ({self.reason})"
            if self.process
            else f"skip: {self.key}: {self.reason}"
        )


@dataclass
class IngestReport:
    """What one ingest run saw and did."""

    run_id: str
    found: int = 0
    new: int = 0
    changed: int = 0
    too_new: int = 0
    recovered: int = 0
    todo: list[str] = field(default_factory=list)
    outcomes: list[SceneOutcome] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stac_collection: str | None = None
    seconds: float = 0.0
    dry_run: bool = False
    decisions: list[SceneDecision] = field(default_factory=list)
    found_keys: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Scenes completed by this run."""
        return sum(o.status == "done" for o in self.outcomes)

    @property
    def failed(self) -> int:
        """Scenes that failed in this run."""
        return sum(o.status == "failed" for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when no scene failed in this run, else 1."""
        return 1 if self.failed else 0

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.dry_run:
            skipped = len(self.decisions) - len(self.todo)
            return (
                f"dry run: {self.found} scenes found, {len(self.todo)} would be processed, "
                f"{skipped} would not (reasons above); nothing was written"
            )
        return (
            f"{self.found} scenes found ({self.new} new, {self.changed} changed, {self.too_new} too new); "
            f"{self.done} done, {self.failed} failed in {self.seconds:.1f} s; manifest: "
            + ", ".join(f"{v} {k}" for k, v in self.counts.items())
        )
