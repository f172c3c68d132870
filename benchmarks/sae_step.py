"""The TopK SAE's training step before and after issue 17, side by side on the same vectors: a whole
`compute.sae.fit` of the default MiniLM SAE (2048 features, k = 16) and of its frozen-decoder baseline.

- before: the values of the chosen features recomputed by gathering encoder columns (a no-grad dense matmul to
  choose them), the decoder rows gathered and multiplied batch by batch, Adam one parameter at a time;
- after: one dense matmul with its graph, the top-k and the ReLU on B*K values, `embedding_bag` for the
  decoder, fused Adam (compute/sae/topk.py, compute/sae/train.py).

Both train on the same rows with the same seed; their final FVU and dead features are reported beside the times.

    python -m benchmarks.sae_step [--store STORE] [--repeats 2] --out FILE.json
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import interleaved, save_results, stats


class GatherTopK:
    """The pre-issue-17 selection and reconstruction of TopKSAE, as a mixin over it (its loss and AuxK are
    TopKSAE's own)."""

    def selection_pre_acts(self, xn_BD):
        with torch.no_grad():  # the features chosen with one dense matmul, no graph
            return torch.addmm(self.b_enc, xn_BD - self.b_dec, self.W_enc).relu_()

    def sparse_forward(self, xc_BD, pre_BF):
        # the chosen values recomputed from gathered encoder columns, the decoder rows gathered and multiplied
        idx_BK = pre_BF.topk(self.cfg.k, dim=-1, sorted=False).indices
        B, K = idx_BK.shape
        feat_N = idx_BK.reshape(-1)
        x_DN = xc_BD.t().repeat_interleave(K, dim=1)
        vals_BK = ((x_DN * self.W_enc.index_select(1, feat_N)).sum(0) + self.b_enc[feat_N]).relu().view(B, K)
        x_hat_BD = torch.bmm(vals_BK.unsqueeze(1), self.W_dec[idx_BK]).squeeze(1) + self.b_dec
        with torch.no_grad():
            active_BK = vals_BK > 0
            fired_F = torch.zeros(self.d_sae, dtype=torch.bool, device=xc_BD.device)
            fired_F[idx_BK[active_BK]] = True
        return x_hat_BD, active_BK.sum(-1).float().mean(), fired_F


@contextmanager
def unfused_adam():
    from compute.sae import train

    adam = torch.optim.Adam

    def plain(params, **kw):
        kw.pop("fused", None)
        return adam(params, **kw)

    train.torch.optim.Adam = plain
    try:
        yield
    finally:
        train.torch.optim.Adam = adam


def _vectors(store: Path | None) -> np.ndarray:
    if store is not None:
        from store import Run
        from store.schema import EMBEDDINGS

        path = sorted(store.glob("runs/minilm-l6-L3-*.h5"))[0]
        return np.asarray(Run(path).array(EMBEDDINGS), np.float32)
    rng = np.random.default_rng(0)  # a stand-in of the same shape, anisotropic as transformer layers are
    return (rng.standard_normal((20_000, 384)) * rng.lognormal(0, 1, 384)).astype(np.float32)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None, help="a store with the default plan's MiniLM runs")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from compute import sae
    from compute.config import TopKConfig
    from compute.sae.topk import TopKSAE

    class Before(GatherTopK, TopKSAE):
        pass

    X = _vectors(args.store)
    cfg = TopKConfig(d_sae=2048, k=16, seed=0)
    torch.set_num_threads(1)

    def before(frozen):
        with unfused_adam():
            return sae.train.fit(Before, X, cfg, freeze_decoder=frozen)

    def after(frozen):
        return sae.fit(X, cfg, freeze_decoder=frozen)

    out = {"rows": list(X.shape), "store": args.store, "config": cfg.model_dump(mode="json")}
    for frozen in (False, True):
        t = interleaved(
            {"before": lambda f=frozen: before(f), "after": lambda f=frozen: after(f)}, args.repeats, warmup=False
        )
        name = "frozen_decoder" if frozen else "sae"
        out[name] = {
            side: dict(
                wall=stats(t[side]),
                cpu=stats(t["_cpu"][side]),
                fvu=float(t["_results"][side].history["fvu"].iloc[-1]),
                final_fvu_on_all_rows=sae.base.fvu(t["_results"][side], X),
                dead=int(t["_results"][side].history["dead"].iloc[-1]),
            )
            for side in ("before", "after")
        }
        out[name]["speedup_cpu"] = out[name]["before"]["cpu"]["median"] / out[name]["after"]["cpu"]["median"]
        print(
            name,
            {k: (v["cpu"]["median"], v["final_fvu_on_all_rows"]) for k, v in out[name].items() if k != "speedup_cpu"},
            f"{out[name]['speedup_cpu']:.2f}x",
            flush=True,
        )
    if args.out:
        save_results(args.out, out)
    return out


if __name__ == "__main__":
    main()
