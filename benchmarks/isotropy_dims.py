"""How many principal directions the cluster-based isotropy enhancement should remove, by dimension (issue 12
item 5): word similarity, neighbour lists and isotropy after compute/geometry.py's enhancement for several
`pcs_removed`, on GloVe 50d (default plan, 20k words) and on MiniLM layers (384-d).

    python -m benchmarks.isotropy_dims [--pcs 0 1 2 3 5 8 12] [--layers 0 1 2 3 4 5 6] [--out PATH]

Word similarity is measured as compute/pipeline.py does: the enhancement is fitted on the run's vectors;
GloVe pairs are looked up in all 400k GloVe words (enhancement applied to them), MiniLM pairs in the run's
vocabulary. Quality figures, not timings.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks import common
from compute import geometry, similarity

RESULTS_DIR = Path(__file__).parent / "results"
PCS = (0, 1, 2, 3, 5, 8, 12)
OVERLAP_K, OVERLAP_SAMPLE = 10, 2000


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float32)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, n, out=np.zeros_like(X), where=n > 0)


def knn(X: np.ndarray, rows: np.ndarray, k: int = OVERLAP_K) -> np.ndarray:
    """The k cosine-nearest other rows of X for each of `rows` (exact)."""
    U = _unit(X)
    S = U[rows] @ U.T
    S[np.arange(len(rows)), rows] = -np.inf
    return np.argpartition(-S, k, axis=1)[:, :k]


def neighbour_overlap(before: np.ndarray, after: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(before, after, strict=True)]))


def sweep(X: np.ndarray, sim_words, sim_X, pcs, clusters: int = 7, seed: int = 0) -> dict:
    """Figures for pcs_removed = each of `pcs` (0 = no enhancement)."""
    rows = np.random.default_rng(seed).choice(len(X), min(OVERLAP_SAMPLE, len(X)), replace=False)
    base_nb = knn(X, rows)
    out = {}
    for p in pcs:
        if p == 0:
            Xe, transform = X, None
        else:
            enh = geometry.fit_enhancement(X, clusters, p, seed)
            Xe, transform = enh.apply(X), enh.apply
        sim = similarity.word_similarity(sim_words, sim_X, transform=transform)
        out[str(p)] = {
            "wordsim353": sim["wordsim353"]["spearman"],
            "simlex999": sim["simlex999"]["spearman"],
            "wordsim353_covered": sim["wordsim353"]["covered"],
            "knn10_overlap_with_raw": neighbour_overlap(base_nb, knn(Xe, rows)),
            "i_cos": geometry.i_cos(Xe),
            "isoscore": geometry.isoscore(Xe),
        }
    return out


def best_pcs(res: dict, key: str = "wordsim353") -> int:
    return int(max(((v[key], int(p)) for p, v in res.items() if int(p) > 0))[1])


def glove(pcs) -> dict:
    from benchmarks.labels import glove_inputs
    from compute import embeddings

    cfg, _, X = glove_inputs()
    source = embeddings.load_static(cfg.model)
    return {"d": int(X.shape[1]), "n": len(X), "sweep": sweep(X, source.words, source.vectors, pcs)}


def minilm(pcs, layers) -> dict:
    import torch

    from compute import contextual, vocabulary
    from compute.config import load_plan

    cfg = next(r for r in load_plan().runs if r.model == "minilm-l6")
    tokenizer, model = contextual.load_transformer(cfg.model, "cpu")
    vocab = vocabulary.build(cfg.vocabulary)
    torch.set_num_threads(1)
    ext = contextual.extract(
        tokenizer,
        model,
        contextual.read_corpus(cfg.corpus or "lee"),
        vocab.words,
        layers,
        token_sample=0,
        seed=0,
        batch_size=cfg.batch_size,
        device="cpu",
    )
    out = {}
    for i, layer in enumerate(ext.layers):
        X = np.ascontiguousarray(ext.word_vectors[i], dtype=np.float32)
        out[str(layer)] = {"d": int(X.shape[1]), "n": len(X), "sweep": sweep(X, vocab.words, X, pcs)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.isotropy_dims", description=__doc__.splitlines()[0])
    ap.add_argument("--pcs", type=int, nargs="+", default=list(PCS))
    ap.add_argument("--layers", type=int, nargs="+", default=list(range(7)), help="MiniLM layers")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    pcs = sorted({0, *args.pcs})
    t0 = time.time()
    res = {
        "command": f"python -m benchmarks.isotropy_dims --pcs {' '.join(map(str, args.pcs))} "
        f"--layers {' '.join(map(str, args.layers))}",
        "updated": common.now_iso(),
        "machine": common.machine(),
        "versions": common.versions(),
        "note": "quality figures on a shared CPU machine; k-means clusters = 7 as in the default plan",
        "glove": glove(pcs),
    }
    print("glove", json.dumps(res["glove"]["sweep"], indent=None), flush=True)
    res["minilm"] = minilm(pcs, args.layers)
    res["best_pcs_by_wordsim353"] = {
        "glove": best_pcs(res["glove"]["sweep"]),
        **{f"minilm_L{k}": best_pcs(v["sweep"]) for k, v in res["minilm"].items()},
    }
    res["seconds"] = time.time() - t0
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or RESULTS_DIR / f"isotropy-dims-{day}.json"
    common.save_results(out, res)
    for k, v in res["minilm"].items():
        print(f"minilm L{k}", json.dumps(v["sweep"]), flush=True)
    print(json.dumps(res["best_pcs_by_wordsim353"]), f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
