"""Comparison files: two stored runs compared on their shared words (written by compute/comparison.py through
store.writer.ComparisonWriter; paths in store/schema.py COMPARISON, docs/store.md "Comparisons"). A comparison of
a and b also answers for b and a: `load` swaps the sides of a file stored the other way round."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import h5py

from store.reader import _decode, _short
from store.schema import (
    COMPARISON,
    COMPARISON_ROOT,
    COMPARISON_SEP,
    RUN_SUFFIX,
    SCHEMA_VERSION,
    TMP_PREFIX,
    StoreError,
    comparison_path,
    comparisons_dir,
)

_SWAP = {"rows_a": "rows_b", "neighbours_a": "neighbours_b", "a_to_b": "b_to_a", "a_to_b_r": "b_to_a_r"}
_SWAP.update({v: k for k, v in _SWAP.items()})
R = COMPARISON_ROOT
_SWAP_ATTRS = (
    (R.created_a, R.created_b),
    (R.feature_r_median, R.feature_r_median_ba),
    (R.feature_r_shuffled, R.feature_r_shuffled_ba),
)


@dataclass
class StoredComparison:
    """One comparison as read, oriented as asked (run_a is the run asked for first). `arrays` is keyed by the
    dataset's field name (`words`, `rows_a`, `jaccard`, `labels.cka`, `features.a_to_b`, ...), `attrs` by
    COMPARISON_ROOT's names."""

    run_a: str
    run_b: str
    attrs: dict
    arrays: dict = field(default_factory=dict)
    swapped: bool = False  # the file holds (run_b, run_a)

    def __getitem__(self, key: str):
        return self.arrays[key]

    def get(self, key: str, default=None):
        return self.arrays.get(key, default)


def _fields() -> dict[str, str]:
    """{key: path} of every dataset of a comparison file: `words`, ..., `labels.names`, `features.a_to_b`."""
    out = dict(COMPARISON.datasets())
    for group in (COMPARISON.labels, COMPARISON.features):
        prefix = group.path.strip("/")
        out.update({f"{prefix}.{name}": path for name, path in group.datasets().items()})
    return out


def find(root, run_a: str, run_b: str) -> tuple[str, bool] | None:
    """(path of the stored comparison of a and b, whether it is stored as b vs a), or None."""
    for a, b, swapped in ((run_a, run_b, False), (run_b, run_a, True)):
        path = comparison_path(root, a, b)
        if path.is_file():
            return str(path), swapped
    return None


def load(root, run_a: str, run_b: str) -> StoredComparison | None:
    """The comparison of a and b (either file), read whole, or None when neither is stored. StoreError (one
    line) for a file that is not a complete comparison."""
    found = find(root, run_a, run_b)
    if found is None:
        return None
    path, swapped = found

    def whole(f):
        attrs = _attrs(f)
        if attrs.get(COMPARISON_ROOT.schema_version) != SCHEMA_VERSION or COMPARISON_ROOT.cka not in attrs:
            raise StoreError(f"comparison file {os.path.basename(path)} is incomplete or of another schema")
        arrays = {}
        for key, p in _fields().items():
            if p in f:
                ds = f[p]
                arrays[key] = ds.asstr()[()].astype(object) if h5py.check_string_dtype(ds.dtype) else ds[()]
        return attrs, arrays

    attrs, arrays = _read(path, whole)
    if swapped:
        arrays = {_swap_key(k): v for k, v in arrays.items()}
        attrs = {**_swap_attrs(attrs), COMPARISON_ROOT.run_a: run_a, COMPARISON_ROOT.run_b: run_b}
    return StoredComparison(run_a, run_b, attrs, arrays, swapped)


def is_stale(attrs: dict, created_a, created_b) -> bool:
    """Whether a comparison (its attributes, oriented as asked) predates a recomputation of either run: the runs'
    `created` stamps are no longer those it was computed from."""
    return (attrs.get(COMPARISON_ROOT.created_a), attrs.get(COMPARISON_ROOT.created_b)) != (created_a, created_b)


def read_attrs(root, run_a: str, run_b: str) -> dict | None:
    """The root attributes of the stored comparison of a and b, oriented as asked (no arrays read), or None."""
    found = find(root, run_a, run_b)
    if found is None:
        return None
    path, swapped = found
    attrs = _read(path, _attrs)
    return _swap_attrs(attrs) if swapped else attrs


def _attrs(f: h5py.File) -> dict:
    return {k: _decode(v) for k, v in f.attrs.items()}


def _read(path: str, read):
    """read(open file) of a comparison file; StoreError (one line) when the file cannot be opened or read."""
    try:
        with h5py.File(path, "r") as f:
            return read(f)
    except OSError as e:
        raise StoreError(f"comparison file {os.path.basename(path)} is corrupt or truncated ({_short(e)})") from None


def _swap_attrs(attrs: dict) -> dict:
    """The attributes of a comparison of a and b as those of b and a: the per-run and per-direction ones trade
    places (CKA, the overlap and their baselines are symmetric or of the pair)."""
    out = dict(attrs)
    for x, y in _SWAP_ATTRS:
        out.pop(x, None), out.pop(y, None)
        if y in attrs:
            out[x] = attrs[y]
        if x in attrs:
            out[y] = attrs[x]
    return out


def _swap_key(key: str) -> str:
    head, _, tail = key.rpartition(".")
    return f"{head}.{_SWAP[tail]}" if head and tail in _SWAP else _SWAP.get(key, key)


def stamp(root, run_a: str, run_b: str):
    """What makes a cached comparison stale: (path, mtime) of the stored file, or None."""
    found = find(root, run_a, run_b)
    if found is None:
        return None
    try:
        return found[0], os.stat(found[0]).st_mtime_ns
    except FileNotFoundError:
        return None


def list_pairs(root=None) -> list[tuple[str, str]]:
    """(run_a, run_b) of every comparison file in the store (temporary files left out)."""
    d = comparisons_dir(root)
    if not d.is_dir():
        return []
    out = []
    for name in sorted(os.listdir(d)):
        if name.startswith(TMP_PREFIX) or not name.endswith(RUN_SUFFIX) or COMPARISON_SEP not in name:
            continue
        a, _, b = name[: -len(RUN_SUFFIX)].partition(COMPARISON_SEP)
        out.append((a, b))
    return out
