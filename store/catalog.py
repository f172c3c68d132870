"""The catalog: every complete run under <store>/runs, rescanned when the folder changes. A file that is not a
complete run of its own name is listed in `errors` (one line each) instead: unreadable, incomplete, or a copy."""

import logging
import os
import threading
import time
from pathlib import Path

import pandas as pd

from store.reader import Run
from store.schema import EMBEDDINGS, ROOT, RUN_SUFFIX, TMP_PREFIX, StoreError, default_root, run_path, runs_dir

log = logging.getLogger("lexiscope.store")

# Temporary files older than this belong to a writer that died; younger ones may still be written.
STALE_TMP_SECONDS = 24 * 3600
# What every run has (RunWriter writes the attributes last): a file without them is not a complete run.
REQUIRED_ATTRS = (ROOT.run_id, ROOT.model, ROOT.layer, ROOT.n_layers, ROOT.source, ROOT.config, ROOT.config_hash)
REQUIRED_DATASETS = (EMBEDDINGS,)


def check_complete(run_id: str, run: Run):
    """StoreError (one line) unless `run` is a complete run stored under its own id."""
    name = f"{run_id}{RUN_SUFFIX}"
    missing = [a for a in REQUIRED_ATTRS if a not in run.attrs] + [p for p in REQUIRED_DATASETS if not run.has(p)]
    if missing:
        raise StoreError(f"run file {name} is incomplete (no {', '.join(missing)}): not a complete Lexiscope run")
    inner = str(run.attrs[ROOT.run_id])
    if inner != run_id:
        raise StoreError(
            f"run file {name} holds run '{inner}': a copied or renamed run file (its links would open '{inner}'); "
            f"remove it, or rename it to {inner}{RUN_SUFFIX}"
        )


class Catalog:
    """Lists complete runs. Cheap to call often: it rescans only when a run file appears,
    disappears or changes (so a running dashboard sees new runs without a restart)."""

    def __init__(self, root=None):
        self.root = default_root(root)
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self._stamp: dict[str, float] = {}
        self._rows: dict[str, dict] = {}
        self.errors: dict[str, str] = {}
        self._table = None  # (the run files' stamps, the table of them)

    def _scan(self):
        d = runs_dir(self.root)
        files = {}
        if d.is_dir():
            for entry in os.scandir(d):
                name = entry.name
                if name.startswith(TMP_PREFIX):
                    _drop_stale(entry)
                    continue
                if name.endswith(RUN_SUFFIX):
                    try:
                        files[name[: -len(RUN_SUFFIX)]] = entry.stat().st_mtime_ns
                    except FileNotFoundError:
                        pass
        with self._lock:
            for run_id in list(self._stamp):
                if run_id not in files:
                    self._forget(run_id)
            for run_id, stamp in files.items():
                if self._stamp.get(run_id) == stamp:
                    continue
                self._forget(run_id)
                self._stamp[run_id] = stamp
                run = Run(run_path(self.root, run_id))
                try:
                    check_complete(run_id, run)
                    self._rows[run_id] = run.summary()
                    self._runs[run_id] = run
                except (StoreError, KeyError) as e:
                    msg = str(e) if isinstance(e, StoreError) else f"run file {run_id}{RUN_SUFFIX} is incomplete ({e})"
                    self.errors[run_id] = msg
                    log.warning("skipping %s", msg)
                    run.close()

    def _forget(self, run_id):
        run = self._runs.pop(run_id, None)
        if run is not None:
            run.close()
        self._rows.pop(run_id, None)
        self._stamp.pop(run_id, None)
        self.errors.pop(run_id, None)

    def table(self) -> pd.DataFrame:
        """One row per readable run, newest first."""
        self._scan()
        with self._lock:
            key = tuple(sorted(self._stamp.items()))
            if self._table is None or self._table[0] != key:  # built again only when a run file changed
                df = pd.DataFrame(list(self._rows.values()))
                if not df.empty:  # runs of one family (one plan entry) sit together, in layer order
                    df = df.sort_values(
                        ["model", "family", "layer", "created"], ascending=[True, True, True, False]
                    ).reset_index(drop=True)
                self._table = (key, df)
            return self._table[1].copy()

    def run_ids(self) -> list[str]:
        t = self.table()
        return [] if t.empty else list(t["run_id"])

    def open(self, run_id: str) -> Run:
        """The Run for `run_id`; StoreError with a one-line message if it is missing or unreadable."""
        with self._lock:
            if run_id not in self._runs:
                self._scan()
            if run_id in self.errors:
                raise StoreError(self.errors[run_id])
            if run_id not in self._runs:
                raise StoreError(f"run {run_id} is not in the store at {self.root}")
            return self._runs[run_id]

    def find_hash(self, config_hash: str) -> str | None:
        self._scan()
        with self._lock:
            for run_id, row in self._rows.items():
                if row.get("config_hash") == config_hash:
                    return run_id
        return None


def _drop_stale(entry):
    try:
        if time.time() - entry.stat().st_mtime > STALE_TMP_SECONDS:
            Path(entry.path).unlink(missing_ok=True)
    except OSError:
        pass
