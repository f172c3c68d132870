"""Store layout constants. The full schema is documented in docs/store.md."""
from pathlib import Path

from store.settings import settings

SCHEMA_VERSION = 1
RUN_SUFFIX = ".h5"
TMP_PREFIX = ".tmp-"

# Attributes every run file carries on its root group.
ROOT_ATTRS = ("schema_version", "run_id", "model", "layer", "n_layers", "source", "config",
              "config_hash", "created", "lexiscope_version")


class StoreError(Exception):
    """A run file that cannot be read: corrupt, truncated, or of an unknown schema."""


def default_root(root=None) -> Path:
    """The store root: the argument, else $LEXISCOPE_STORE, else ./lexiscope-store."""
    return Path(root) if root else settings().store


def runs_dir(root=None) -> Path:
    return default_root(root) / "runs"


def run_path(root, run_id: str) -> Path:
    return runs_dir(root) / f"{run_id}{RUN_SUFFIX}"
