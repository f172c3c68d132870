"""The frozen-random-decoder SAE baseline ("Sanity checks for sparse autoencoders: do SAEs beat random
baselines?", Korznikov et al. 2026, the Frozen Decoder SAE): the decoder rows stay at their random unit-norm
initialisation; only the encoder (W_enc, b_enc) and the decoder bias b_dec are trained, with the same loss,
schedule and seed as compute/sae.py's `fit`. An interpretability score that the trained SAE does not beat on
this baseline says nothing about learned features.

It reuses compute/sae.py's pieces (initialisation, normalisation, losses, schedule); when the SAE package
gains a `freeze_decoder` training option this module becomes that call.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from compute import sae as sae_lib
from compute.config import SAEConfig


def fit_frozen_decoder(X: np.ndarray, cfg: SAEConfig, steps: int | None = None) -> sae_lib.SAE:
    """Train an SAE of `cfg` on the rows of X (n, d) with W_dec frozen at random unit rows (CPU, seeded)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 2 or not np.isfinite(X).all():
        raise ValueError(f"X: need a finite 2-D matrix with at least 2 rows, got shape {X.shape}")
    n, d = X.shape
    d_sae = sae_lib.check_config(cfg, d)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = sae_lib.SAE(d, d_sae, cfg)
    sae_lib._init_weights(model, gen)
    with torch.no_grad():
        # Unit rows for both architectures: relu_l1 starts at norm 0.1, which frozen would only rescale codes.
        model.W_dec.data /= model.W_dec.data.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        model.W_enc.data.copy_(model.W_dec.data.T)
    model.W_dec.requires_grad_(False)
    X_ND = torch.from_numpy(X)
    mu_D, scale = sae_lib._normalisation(X_ND)
    model.mu.copy_(mu_D)
    model.scale.copy_(scale)
    Xn_ND = (X_ND - mu_D) * scale

    steps = steps or sae_lib.default_steps(n, d, d_sae, cfg)
    batch = min(cfg.batch_size, n)
    aux_k = cfg.aux_k or max(1, d // 2)
    trainable = [model.W_enc, model.b_enc, model.b_dec]
    opt = torch.optim.Adam(trainable, lr=cfg.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: sae_lib._lr_factor(s, steps))
    since_fired_F = torch.zeros(d_sae, dtype=torch.long)
    warm_steps = max(1, int(cfg.l1_warmup_frac * steps))
    perm, pos = torch.randperm(n, generator=gen), 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(steps):
            if pos + batch > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            xn_BD = Xn_ND[perm[pos : pos + batch]]
            pos += batch
            if cfg.arch == "topk":
                loss, _, _, fired_F = sae_lib._topk_loss(model, xn_BD, since_fired_F >= cfg.dead_steps, aux_k)
            else:
                l1_coef = cfg.l1 * min(1.0, (step + 1) / warm_steps)
                loss, _, _, fired_F = sae_lib._relu_l1_loss(model, xn_BD, l1_coef)
            if not math.isfinite(float(loss.detach())):
                raise ValueError(f"frozen-decoder SAE diverged at step {step} (loss is NaN); lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            since_fired_F += 1
            since_fired_F[fired_F] = 0
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model
