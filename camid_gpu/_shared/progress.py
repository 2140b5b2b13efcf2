"""The progress bar of every long step (fingerprint, identify, residual, cluster, report, evaluate).

A rich bar on stderr with the count done, the rate, the time spent and the time left, updated per image,
when stderr is a terminal and ``--quiet`` is not given; silent otherwise (a log file gets no control codes).
rich is a core dependency (issue 18: the README install had no bar). Steps that finish images in chunks call
:meth:`Progress.started` per image as it is decoded, so the bar moves (and the estimate of the time left
forms) per image even while a chunk computes: half of an image's share is its decoding, half its result.
:meth:`Progress.note` prints a line (e.g. an image's decision as it is done) above the bar.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator


class Progress:
    """``Progress(total, label, enabled)``; ``enabled`` None = when stderr is a terminal."""

    def __init__(self, total: int, label: str = "images", enabled: bool | None = None):
        self.total, self.label = int(total), label
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self.done = 0
        self._started = 0
        self._t0 = time.monotonic()
        self._bar: Any = None
        if self.enabled and self.total > 0:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        # on stderr, so that stdout stays the answer; stdout lines printed meanwhile go above the bar
        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[count]}"), TextColumn("{task.fields[rate]}"),
                                 TimeElapsedColumn(), TextColumn("spent,"), TimeRemainingColumn(), TextColumn("left"),
                                 console=Console(stderr=True), redirect_stdout=sys.stdout.isatty(),
                                 redirect_stderr=False, transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=2 * self.total, count=self._count(), rate="")

    def _count(self) -> str:
        return f"{self.done}/{self.total}"

    def started(self, n: int = 1) -> None:
        """``n`` more images decoded (their results follow in a chunk): half of their share of the bar."""
        n = max(0, min(n, self.total - self._started))
        self._started += n
        self._update(n)

    def advance(self, n: int = 1) -> None:
        """``n`` more images done."""
        self.done += n
        catch_up = max(0, self.done - self._started)  # steps that never call started(): their whole share now
        self._started += catch_up
        self._update(n + catch_up)

    def advanced(self, value: Any) -> Any:
        """One more step done (:meth:`advance`), returning ``value``: the step's result, inside an expression."""
        self.advance()
        return value

    def _update(self, units: int) -> None:
        if self._bar is None:
            return
        elapsed = time.monotonic() - self._t0
        rate = f"{self.done / elapsed:.2f} {self.label.split()[-1] if ' ' in self.label else 'img'}/s" \
            if self.done and elapsed > 0 else ""
        self._bar.update(self._task, advance=units, count=self._count(), rate=rate)

    def counted(self, items: Iterable[Any]) -> Iterator[Any]:
        """``items`` as they are, one image done per item."""
        for item in items:
            self.advance()
            yield item

    def note(self, text: str) -> None:
        """Print ``text`` on stdout (above the bar when one is shown)."""
        print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
