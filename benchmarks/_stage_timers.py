"""Where time goes inside a stage: accumulate wall time of module forwards and of patched functions.

``StageTimers`` wraps callables in place (module attributes, methods, ``nn.Module.forward`` via hooks)
and restores them on exit, so the real pipeline (``predict_scene``) runs unchanged while the time of,
for example, SAM's mask decoder or the GeoPackage writer is summed.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class StageTimers:
    """Named wall-clock accumulators (seconds and call counts)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[Callable[[], None]] = []

    def wrap(
        self, name: str, fn: Callable[..., Any], label: Callable[..., str] | None = None
    ) -> Callable[..., Any]:
        """``fn`` with its wall time added to ``name`` (or to ``label(*args, **kwargs)``)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            key = label(*args, **kwargs) if label is not None else name
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - t0
                self.calls[key] += 1

        return timed

    def patch(
        self, owner: Any, attr: str, name: str | None = None, label: Callable[..., str] | None = None
    ) -> None:
        """Replace ``owner.attr`` (a module's function, a class's or instance's method) by a timed one.

        Functions that the pipeline imports inside its functions (``from x import f`` at call time)
        are found through the module attribute, so patching the module is enough.
        """
        had = attr in vars(owner)
        old = vars(owner)[attr] if had else None
        setattr(owner, attr, self.wrap(name or attr, getattr(owner, attr), label))

        def undo() -> None:
            if had:
                setattr(owner, attr, old)
            else:
                delattr(owner, attr)

        self._undo.append(undo)

    def module(self, module: Any, name: str) -> None:
        """Time every forward of a ``torch.nn.Module`` (hooks; nested modules are timed on their own)."""
        starts: list[float] = []

        def pre(_m: Any, _inp: Any) -> None:
            starts.append(time.perf_counter())

        def post(_m: Any, _inp: Any, _out: Any) -> None:
            self.seconds[name] += time.perf_counter() - starts.pop()
            self.calls[name] += 1

        h1 = module.register_forward_pre_hook(pre)
        h2 = module.register_forward_hook(post)
        self._undo.append(h1.remove)
        self._undo.append(h2.remove)

    def restore(self) -> None:
        """Undo every patch (last first)."""
        while self._undo:
            self._undo.pop()()

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{name: {"s": seconds, "calls": n}}``."""
        return {k: {"s": round(v, 4), "calls": self.calls[k]} for k, v in self.seconds.items()}


@contextmanager
def stage_timers() -> Iterator[StageTimers]:
    """A :class:`StageTimers` whose patches are undone on exit."""
    t = StageTimers()
    try:
        yield t
    finally:
        t.restore()
