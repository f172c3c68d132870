"""Atomic run writer: everything goes to a temporary file that is renamed only when complete."""

import datetime as _dt
import json
import os
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from store.schema import CSR, ROOT, ROOT_ATTRS, SCHEMA_VERSION, TMP_PREFIX, run_path, runs_dir

# Compress arrays above this many bytes; smaller ones are cheaper to read raw.
COMPRESS_MIN_BYTES = 64 * 1024


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lexiscope")
    except Exception:
        return "0+unknown"


class RunWriter:
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
        self.final = run_path(root, run_id)
        self.tmp = runs_dir(root) / f"{TMP_PREFIX}{run_id}-{os.getpid()}.h5"
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
            ROOT.created: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            ROOT.lexiscope_version: _version(),
        }
        # Every root attribute of the schema, in its order; `family` is left out when not given.
        self.root_attrs = {k: values[k] for k in ROOT_ATTRS if values[k] is not None}
        self.f = None

    def __enter__(self):
        runs_dir(self.root).mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.tmp, "w", libver="latest")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            # The identity attributes go last: a file is only a run once everything else is in it.
            self.f.attrs.update(self.root_attrs)
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
            raise RuntimeError("RunWriter used outside its with-block")
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
