"""The one training loop of every SAE architecture: Adam with warm-up and decay, shuffled batches of the
normalised rows, dead-feature tracking, a history log and progress. The architecture plugs in through the
hooks of compute/sae/base.py (init_weights, training_loss, before/after_optimizer_step)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from compute.device import resolve_device
from compute.sae.base import HISTORY_COLUMNS, SAE, StepContext

MAX_EPOCHS = 150
COMPUTE_BUDGET = 2e11  # encoder multiply-adds per run when steps/epochs are not set
DECAY_FRAC = 0.2
FUSED_ADAM = ("cpu", "cuda")  # the devices torch has a fused Adam for


def default_steps(n: int, d: int, d_sae: int, cfg) -> int:
    """Steps when neither `steps` nor `epochs` is set: at most MAX_EPOCHS passes over the words and a fixed
    compute budget (encoder multiply-adds), clipped to [200, 6000]. A 20k x 50 GloVe matrix with 1024
    features gets ~5900 steps of 512; 20k x 384 MiniLM vectors with 2048 features a few hundred."""
    batch = min(cfg.batch_size, n)
    if cfg.steps is not None:
        return cfg.steps
    if cfg.epochs is not None:
        return max(1, int(math.ceil(cfg.epochs * n / batch)))
    by_epochs = math.ceil(MAX_EPOCHS * n / batch)
    by_budget = int(COMPUTE_BUDGET / (batch * d * d_sae))
    return int(np.clip(min(by_epochs, by_budget), 200, 6000))


def _lr_factor(step: int, steps: int) -> float:
    # Short linear warm-up, then constant, then linear decay over the last 20% (Anthropic April 2024 update).
    warm = max(1, steps // 100)
    if step < warm:
        return (step + 1) / warm
    decay_from = int((1 - DECAY_FRAC) * steps)
    if step >= decay_from:
        return max(0.0, (steps - step) / max(1, steps - decay_from))
    return 1.0


def fit(
    sae_cls: type[SAE], X: np.ndarray, cfg, device: str = "cpu", progress=None, freeze_decoder: bool = False
) -> SAE:
    """Train a `sae_cls` on the rows of X (n, d). Seeded by cfg.seed: same config, same weights on CPU.
    `progress(stage, fraction)` is called as training advances. Raises ValueError on NaN divergence.

    freeze_decoder: keep the decoder rows at their random unit-norm initialisation and train only W_enc,
    b_enc and b_dec, with the same loss, schedule and seed: the Frozen Decoder baseline of "Sanity checks
    for sparse autoencoders: do SAEs beat random baselines?" (Korznikov et al. 2026). An interpretability
    score the trained SAE does not beat on this baseline says nothing about learned features."""
    args = (sae_cls, X, cfg, device, progress, freeze_decoder)
    if resolve_device(device) != "cpu":
        return _fit(*args)
    # One intra-op thread on the CPU: the per-step ops are small, and with a second thread OpenMP's
    # spin-waits made training 2-40x slower whenever anything else used a core (measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(*args)
    finally:
        torch.set_num_threads(threads)


def _fit(sae_cls: type[SAE], X: np.ndarray, cfg, device: str, progress, freeze_decoder: bool) -> SAE:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"sae: need a 2-D matrix with at least 2 rows, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("sae: input vectors contain NaN or inf")
    n, d = X.shape
    d_sae = cfg.width(d)
    device = resolve_device(device)
    gen = torch.Generator().manual_seed(cfg.seed)

    sae = sae_cls(d, d_sae, cfg)
    sae.check_width()
    sae.init_weights(gen)
    if freeze_decoder:
        sae.freeze_decoder()
    X_ND = torch.from_numpy(X)
    sae.fit_normalisation(X_ND)
    sae.to(device)
    Xn_ND = sae.normalise(X_ND.to(device))

    steps = default_steps(n, d, d_sae, cfg)
    batch = min(cfg.batch_size, n)
    # fused: one kernel over all parameters, 3.5x faster steps of the optimiser on the CPU (benchmarks/sae_step.py)
    opt = torch.optim.Adam(
        [p for p in sae.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=(0.9, 0.999),
        fused=torch.device(device).type in FUSED_ADAM,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps))
    since_fired_F = torch.zeros(d_sae, dtype=torch.long, device=device)

    rows = {c: [] for c in HISTORY_COLUMNS}
    perm = torch.randperm(n, generator=gen)
    pos = 0
    desc = f"SAE {cfg.arch} F={d_sae}" + (" frozen decoder" if freeze_decoder else "")
    bar = tqdm(range(steps), desc=desc, leave=False, mininterval=1.0)
    for step in bar:
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        xn_BD = Xn_ND[perm[pos : pos + batch].to(device)]
        pos += batch

        out = sae.training_loss(xn_BD, StepContext(step, steps, since_fired_F >= cfg.dead_steps))
        loss_value = float(out.loss.detach())
        if not math.isfinite(loss_value):
            bar.close()
            raise ValueError(f"SAE training diverged at step {step} (loss is NaN); lower lr")

        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.before_optimizer_step()
        opt.step()
        sched.step()
        sae.after_optimizer_step()
        since_fired_F += 1
        since_fired_F[out.fired_F] = 0

        if step % cfg.log_every == 0 or step == steps - 1:
            fvu_value = float(out.fvu.detach())
            rows["step"].append(step)
            rows["loss"].append(loss_value)
            rows["mse"].append(fvu_value * float(xn_BD.var(0, unbiased=False).sum()) / d)
            rows["l0"].append(float(out.l0))
            rows["fvu"].append(fvu_value)
            rows["dead"].append(int((since_fired_F >= cfg.dead_steps).sum()))
            if progress is not None:
                progress("sae", (step + 1) / steps)
    bar.close()
    if progress is not None:
        progress("sae", 1.0)
    sae.history = pd.DataFrame(rows).astype({"step": np.int64, "dead": np.int64})
    sae.eval()
    return sae.cpu()
