"""The HDF5 store: the contract between compute/ and dashboard/. Imports neither torch nor dash."""

from store.catalog import Catalog
from store.reader import Run
from store.schema import SCHEMA_VERSION, StoreError, default_root, runs_dir
from store.writer import RunWriter

__all__ = ["SCHEMA_VERSION", "StoreError", "default_root", "runs_dir", "RunWriter", "Run", "Catalog"]
