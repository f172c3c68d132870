"""Lazy, fork-safe reader for one run file."""

import json
import os
import threading
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from store.schema import CSR, EMBEDDINGS, GEOMETRY, GROUPS, ROOT, SAE, SCHEMA_VERSION, WORDS, StoreError, family_of


def _decode(value):
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class Run:
    """One run file, and the one place that reads run files. The h5py handle is opened on first use in
    each process, never inherited across a fork. What is read once (arrays, attributes, whether a path
    exists) is cached for the life of the handle: runs are never edited in place."""

    def __init__(self, path):
        self.path = Path(path)
        self.run_id = self.path.stem
        self._handle = None
        self._pid = None
        self._lock = threading.RLock()
        self._cache = {}

    # -- file handle -------------------------------------------------------------------------
    @property
    def file(self) -> h5py.File:
        with self._lock:
            if self._handle is None or self._pid != os.getpid():
                try:
                    f = h5py.File(self.path, "r")
                except FileNotFoundError:
                    raise StoreError(f"run {self.run_id}: file {self.path} is missing") from None
                except OSError as e:
                    raise StoreError(f"run file {self.path.name} is corrupt or truncated ({_short(e)})") from None
                version = f.attrs.get(ROOT.schema_version)
                if version is None:
                    f.close()
                    raise StoreError(f"run file {self.path.name} has no schema_version: not a complete Lexiscope run")
                if int(version) != SCHEMA_VERSION:
                    f.close()
                    raise StoreError(
                        f"run file {self.path.name} has schema_version {int(version)}; "
                        f"this Lexiscope reads version {SCHEMA_VERSION}"
                    )
                self._handle, self._pid, self._cache = f, os.getpid(), {}
            return self._handle

    def close(self):
        with self._lock:
            if self._handle is not None and self._pid == os.getpid():
                self._handle.close()
            self._handle = None

    def _read(self, fn, what):
        try:
            with self._lock:
                return fn(self.file)
        except StoreError:
            raise
        except KeyError:
            raise
        except (OSError, RuntimeError, ValueError) as e:
            raise StoreError(f"run file {self.path.name}: cannot read {what} ({_short(e)})") from None

    # -- generic access ----------------------------------------------------------------------
    def has(self, path: str) -> bool:
        key = ("has", path)
        if key not in self._cache:
            self._cache[key] = self._read(lambda f: path in f, path)
        return self._cache[key]

    def keys(self, path: str = "/") -> list[str]:
        return self._read(lambda f: list(f[path].keys()) if path in f else [], path)

    def attrs_of(self, path: str = "/") -> dict:
        """The attributes of a group or dataset, decoded ({} if the path is absent)."""
        key = ("attrs", path)
        if key not in self._cache:

            def get(f):
                if path not in f:
                    return {}
                return {k: _decode(v) for k, v in f[path].attrs.items()}

            self._cache[key] = self._read(get, f"attributes of {path}")
        return dict(self._cache[key])

    def array(self, path: str, cache: bool = True) -> np.ndarray:
        """The whole dataset at `path` as numpy (strings decoded to str). Raises KeyError if absent."""
        if cache and path in self._cache:
            return self._cache[path]

        def get(f):
            ds = f[path]
            if h5py.check_string_dtype(ds.dtype) is not None:
                return ds.asstr()[()].astype(object) if ds.shape else ds.asstr()[()]
            return ds[()]

        out = self._read(get, path)
        if cache:
            self._cache[path] = out
        return out

    def get(self, path: str, default=None):
        return self.array(path) if self.has(path) else default

    def rows(self, path: str, index) -> np.ndarray:
        """Selected rows of a 2-D dataset without loading it all (index in any order)."""
        idx = np.asarray(index, dtype=np.int64).ravel()
        if path in self._cache:
            return self._cache[path][idx]
        order = np.argsort(idx)
        uniq, inverse = np.unique(idx[order], return_inverse=True)
        block = self._read(lambda f: f[path][uniq], path)
        out = np.empty((len(idx),) + block.shape[1:], dtype=block.dtype)
        out[order] = block[inverse]
        return out

    def csr(self, matrix: CSR | str) -> sp.csr_matrix:
        """A stored sparse matrix (a schema CSR group, or its path)."""
        m = CSR(matrix) if isinstance(matrix, str) else matrix
        key = f"{m.path}#csr"
        if key not in self._cache:
            shape = tuple(int(x) for x in self.attrs_of(m.path)["shape"])
            self._cache[key] = sp.csr_matrix(
                (
                    self.array(m.data, cache=False),
                    self.array(m.indices, cache=False),
                    self.array(m.indptr, cache=False),
                ),
                shape=shape,
            )
        return self._cache[key]

    def csc(self, matrix: CSR | str) -> sp.csc_matrix:
        """Column-major copy of a stored CSR matrix, for fast per-feature lookups."""
        m = CSR(matrix) if isinstance(matrix, str) else matrix
        key = f"{m.path}#csc"
        if key not in self._cache:
            self._cache[key] = self.csr(m).tocsc()
        return self._cache[key]

    # -- identity ----------------------------------------------------------------------------
    @cached_property
    def attrs(self) -> dict:
        return self.attrs_of("/")

    @property
    def config(self) -> dict:
        return self.attrs.get(ROOT.config) or {}

    @property
    def model(self) -> str:
        return self.attrs[ROOT.model]

    @property
    def layer(self) -> int:
        return int(self.attrs[ROOT.layer])

    @property
    def family(self) -> str:
        """Shared by the runs of one plan entry across layers; derived from the config for files
        written before the `family` attribute existed."""
        return self.attrs.get(ROOT.family) or family_of(self.attrs.get(ROOT.model), self.config)

    # -- words -------------------------------------------------------------------------------
    @property
    def words(self) -> pd.DataFrame:
        """One row per word: text, zipf, group (index), group_name, and lang / n_contexts if stored."""
        if "#words" not in self._cache:
            cols = {"text": self.array(WORDS.text, cache=False)}
            for name, path in WORDS.datasets().items():
                if name != "text" and self.has(path):
                    cols[name] = self.array(path, cache=False)
            df = pd.DataFrame(cols)
            names = self.group_names
            if "group" in df:
                df["group_name"] = [names[g] if 0 <= g < len(names) else "" for g in df["group"]]
            self._cache["#words"] = df
        return self._cache["#words"]

    @property
    def group_names(self) -> list[str]:
        return list(self.get(GROUPS.names, np.array([], dtype=object)))

    @property
    def word_index(self) -> dict:
        if "#index" not in self._cache:
            self._cache["#index"] = {w: i for i, w in enumerate(self.array(WORDS.text))}
        return self._cache["#index"]

    def index_of(self, word: str) -> int:
        """Row of `word`; KeyError with a readable message if it is not in this run."""
        try:
            return self.word_index[word]
        except KeyError:
            raise KeyError(f"'{word}' is not in the vocabulary of run {self.run_id}") from None

    def summary(self) -> dict:
        """The catalog row for this run."""
        a = self.attrs
        out = {
            k: a.get(k)
            for k in (ROOT.run_id, ROOT.model, ROOT.layer, ROOT.n_layers, ROOT.source, ROOT.config_hash, ROOT.created)
        }
        out["family"] = self.family
        out["name"] = self.config.get("name") or a.get(ROOT.model)
        shape = self._read(lambda f: f[EMBEDDINGS].shape if EMBEDDINGS in f else (0, 0), EMBEDDINGS)
        out["n_words"], out["dim"] = int(shape[0]), int(shape[1])
        g = self.attrs_of(GEOMETRY.path)
        for k in ("i_cos", "i_cos_sampled", "i_pc", "i_pc_log10", "isoscore"):
            out[k] = g.get(k)
        s = self.attrs_of(SAE.path)
        for k in ("arch", "d_sae", "k", "fvu", "l0", "dead_frac", "intrusion", "qvec"):
            out[f"sae_{k}"] = s.get(k)
        out["path"] = str(self.path)
        return out


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200]
