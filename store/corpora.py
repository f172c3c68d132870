"""Corpus files: the sentences a contextual run read, stored once per corpus (`<store>/corpora/<hash>.h5`) and
referenced by hash from each run's `/contexts` attributes, so the layers of a plan share one copy."""

import hashlib
import json
import os

import h5py
import numpy as np

from store.schema import CORPUS, TMP_PREFIX, StoreError, corpus_path


def corpus_hash(sentences) -> str:
    """16 hex digits of the SHA-256 of the sentences, one per line: the same text, the same file."""
    h = hashlib.sha256()
    for s in sentences:
        h.update(s.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def write_corpus(root, sentences, sources) -> str:
    """Store the sentences (unless a file of the same hash exists) and return their hash. Written under a
    temporary name and renamed when complete, like a run."""
    key = corpus_hash(sentences)
    final = corpus_path(root, key)
    if final.is_file():
        return key
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{key}-{os.getpid()}.h5"
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(
                CORPUS.sentences,
                data=np.asarray(list(sentences), dtype=object),
                dtype=h5py.string_dtype("utf-8"),
                **({"chunks": True, "compression": "gzip"} if len(sentences) > 1000 else {}),
            )
            f.attrs["sources"] = json.dumps(list(sources))
            f.attrs["n_sentences"] = len(sentences)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return key


def read_sentences(root, key: str, index=None) -> list[str]:
    """All sentences of a stored corpus, or those at `index` (in that order)."""
    path = corpus_path(root, key)
    try:
        with h5py.File(path, "r") as f:
            ds = f[CORPUS.sentences]
            if index is None:
                return list(ds.asstr()[()])
            idx = np.asarray(index, dtype=np.int64).ravel()
            if not len(idx):
                return []
            uniq, inverse = np.unique(idx, return_inverse=True)
            block = ds.asstr()[uniq]
            return [block[i] for i in inverse]
    except FileNotFoundError:
        raise StoreError(f"corpus {key}: file {path} is missing") from None
    except (OSError, KeyError) as e:
        raise StoreError(f"corpus file {path.name} cannot be read ({str(e).splitlines()[0][:200]})") from None
