"""Atomic writers of run and comparison files: everything goes to a temporary file that is renamed only when
complete."""

import datetime as _dt
import json
import os
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from store.schema import (
    COMPARISON_ROOT,
    COMPARISON_ROOT_ATTRS,
    CSR,
    ROOT,
    ROOT_ATTRS,
    SCHEMA_VERSION,
    TMP_PREFIX,
    comparison_path,
    run_path,
)

# Compress arrays above this many bytes; smaller ones are cheaper to read raw.
COMPRESS_MIN_BYTES = 64 * 1024


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lexiscope")
    except Exception:
        return "0+unknown"


class AtomicWriter:
    """Write one HDF5 file atomically: into `<folder>/.tmp-<name>-<pid>.h5`, fsynced and renamed to `final` on a
    clean exit of the with-block, deleted on an exception. `root_attrs` go on `/` last, so a file that has them
    is complete. RunWriter (a run) and ComparisonWriter (two runs compared) are the two kinds of file."""

    def __init__(self, final: Path, root_attrs: dict):
        self.final = Path(final)
        self.tmp = self.final.parent / f"{TMP_PREFIX}{self.final.stem}-{os.getpid()}.h5"
        self.root_attrs = root_attrs
        self.f = None

    def __enter__(self):
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.tmp, "w", libver="latest")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            # The identity attributes go last: a file is only complete once everything else is in it.
            self.f.attrs.update(_attrs(self.root_attrs))
            self.f.flush()
            self.f.close()
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.final)
            _fsync_dir(self.final.parent)
        else:
            try:
                self.f.close()
            finally:
                self.tmp.unlink(missing_ok=True)
        return False

    def put(self, path: str, data, attrs: dict | None = None):
        """Write an array (numeric, or a list of str stored as utf-8) at `path`."""
        if self.f is None:
            raise RuntimeError(f"{type(self).__name__} used outside its with-block")
        if path in self.f:
            del self.f[path]
        if isinstance(data, (list, tuple)) or (isinstance(data, np.ndarray) and data.dtype.kind in "UO"):
            arr = np.asarray([str(s) for s in data], dtype=object)
            ds = self.f.create_dataset(
                path, data=arr, dtype=h5py.string_dtype("utf-8"), **_layout(arr.shape, 16 * arr.size)
            )
        else:
            arr = np.ascontiguousarray(data)
            ds = self.f.create_dataset(path, data=arr, **_layout(arr.shape, arr.nbytes))
        if attrs:
            ds.attrs.update(_attrs(attrs))
        return ds

    def write_all(self, output: dict):
        """Write a stage's output: {path: value}. An array or list of str becomes a dataset,
        a scipy sparse matrix a CSR group, and a dict the attributes of the group at that path."""
        for path, value in output.items():
            if isinstance(value, dict):
                self.set_attrs(path, value)
            elif sp.issparse(value):
                self.put_csr(path, value)
            else:
                self.put(path, value)

    def put_csr(self, path: str, matrix, attrs: dict | None = None):
        """A sparse matrix as {indptr, indices, data} plus a `shape` attribute."""
        m, at = sp.csr_matrix(matrix), CSR(path)
        self.put(at.indptr, m.indptr.astype(np.int64))
        self.put(at.indices, m.indices.astype(np.int32))
        self.put(at.data, m.data.astype(np.float32))
        self.set_attrs(at.path, {"shape": np.asarray(m.shape, dtype=np.int64), **(attrs or {})})

    def set_attrs(self, path: str, attrs: dict):
        g = self.f.require_group(path) if path not in ("", "/") else self.f
        g.attrs.update(_attrs(attrs))


class RunWriter(AtomicWriter):
    """Write one run.

    with RunWriter(root, run_id, model=..., layer=..., ...) as w:
        w.put("embeddings", X)
    On a clean exit the file is fsynced and renamed into runs/; on an exception it is deleted,
    so readers never see a partial run.
    """

    def __init__(
        self,
        root,
        run_id: str,
        *,
        model: str,
        layer: int,
        n_layers: int,
        source: str,
        config: dict,
        config_hash: str,
        family: str | None = None,
    ):
        self.root = Path(root)
        self.run_id = run_id
        values = {
            ROOT.schema_version: SCHEMA_VERSION,
            ROOT.run_id: run_id,
            ROOT.model: model,
            ROOT.layer: int(layer),
            ROOT.n_layers: int(n_layers),
            ROOT.source: source,
            ROOT.config: json.dumps(config, sort_keys=True),
            ROOT.config_hash: config_hash,
            ROOT.family: family,
            ROOT.created: now_iso(),
            ROOT.lexiscope_version: _version(),
        }
        # Every root attribute of the schema, in its order; `family` is left out when not given.
        super().__init__(run_path(root, run_id), {k: values[k] for k in ROOT_ATTRS if values[k] is not None})


class ComparisonWriter(AtomicWriter):
    """Write the comparison of runs a and b (`<store>/comparisons/<a>__<b>.h5`, store/schema.py COMPARISON);
    `attrs`: the other root attributes of COMPARISON_ROOT."""

    def __init__(self, root, run_a: str, run_b: str, attrs: dict):
        values = {
            **attrs,
            COMPARISON_ROOT.schema_version: SCHEMA_VERSION,
            COMPARISON_ROOT.run_a: run_a,
            COMPARISON_ROOT.run_b: run_b,
            COMPARISON_ROOT.created: now_iso(),
            COMPARISON_ROOT.lexiscope_version: _version(),
        }
        unknown = set(values) - set(COMPARISON_ROOT_ATTRS)
        if unknown:
            raise ValueError(f"comparison attributes {sorted(unknown)} are not in the schema")
        super().__init__(comparison_path(root, run_a, run_b), values)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _layout(shape, nbytes):
    """Chunk and compress arrays large enough to pay for it; row-chunked so one row reads fast."""
    if nbytes < COMPRESS_MIN_BYTES or len(shape) == 0 or 0 in shape:
        return {}
    row_bytes = max(1, nbytes // shape[0])
    rows = int(max(1, min(shape[0], (256 * 1024) // row_bytes)))
    return dict(chunks=(rows,) + tuple(shape[1:]), compression="gzip", compression_opts=4, shuffle=True)


def _attrs(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, (dict, list, tuple)) and not (
            isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float, np.number)) for x in v)
        ):
            v = json.dumps(v)
        out[k] = v
    return out


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
