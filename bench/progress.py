"""Progress reporting: rich bars on a TTY, silence elsewhere or with --quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Nested progress bars; ``track`` wraps an iterable like ``rich.progress.track``."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._rich = None

    @contextmanager
    def session(self) -> Iterator[Progress]:
        """Show live bars for the duration of the block."""
        if not self.enabled:
            yield self
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        with RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
        ) as rich_progress:
            self._rich = rich_progress
            try:
                yield self
            finally:
                self._rich = None

    def track(self, iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate, advancing a bar named ``description`` when bars are live."""
        if self._rich is None:
            yield from iterable
            return
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        task = self._rich.add_task(description, total=total)
        try:
            for item in iterable:
                yield item
                self._rich.advance(task)
        finally:
            self._rich.remove_task(task)


NULL_PROGRESS = Progress(enabled=False)
