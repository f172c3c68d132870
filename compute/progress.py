"""Stage progress: a tqdm bar per stage in the terminal, and an optional callback for the job queue."""

import sys
from contextlib import contextmanager

from tqdm.auto import tqdm


class Cancelled(Exception):
    """Raised from a progress callback to stop a run; nothing is written."""


class Progress:
    """`callback(stage: str, fraction: float)` is called on every update; it may raise Cancelled."""

    def __init__(self, callback=None, show: bool | None = None, prefix: str = ""):
        self.callback = callback
        self.show = sys.stderr.isatty() if show is None else show
        self.prefix = prefix

    def child(self, prefix: str) -> "Progress":
        return Progress(self.callback, self.show, prefix)

    @contextmanager
    def stage(self, name: str):
        label = f"{self.prefix} {name}".strip()
        bar = tqdm(
            total=100,
            desc=label,
            leave=self.show,
            disable=not self.show,
            file=sys.stderr,
            bar_format="{desc:<34} {percentage:3.0f}%|{bar:30}| {elapsed}",
        )

        def update(stage_or_frac, frac=None):
            # Accept both update(frac) and update(substage, frac), as the stage functions call it.
            f = stage_or_frac if frac is None else frac
            bar.n = int(100 * max(0.0, min(1.0, float(f))))
            bar.refresh()
            if self.callback:
                self.callback(label, float(f))

        if self.callback:
            self.callback(label, 0.0)
        try:
            yield update
            update(1.0)
        finally:
            bar.close()
