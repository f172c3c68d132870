"""Sparse autoencoders on word vectors: `topk` (Gao et al. 2024) and `relu_l1` (Anthropic, "Towards
Monosemanticity" + the April 2024 update). One interface: `fit(X, cfg) -> SAE`, `sae.encode`, `sae.decode`.

Shapes in names: B batch, D input dim, F features (d_sae), K active features per row.
The weights apply to *normalised* inputs, x_norm = (x - mu) * scale with E||x_norm||^2 = D; `encode` and
`decode` take and return RAW vectors and normalise inside, so the stored weights + normalisation suffice.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm

from compute.config import SAEConfig

HISTORY_COLUMNS = ("step", "loss", "mse", "l0", "fvu", "dead")
MAX_EPOCHS = 150
COMPUTE_BUDGET = 2e11  # encoder multiply-adds per run when steps/epochs are not set


def resolve_device(device: str = "cpu") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_config(cfg: SAEConfig, d: int) -> int:
    """The SAE width for input dim d; one-line errors naming the field."""
    d_sae = cfg.width(d)
    if cfg.arch == "topk" and cfg.k > d_sae:
        raise ValueError(f"sae.k: k ({cfg.k}) must not exceed d_sae ({d_sae})")
    if cfg.l1 < 0:
        raise ValueError(f"sae.l1: must be >= 0, got {cfg.l1}")
    return d_sae


def default_steps(n: int, d: int, d_sae: int, cfg: SAEConfig) -> int:
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


class SAE(nn.Module):
    def __init__(self, d: int, d_sae: int, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        self.arch = cfg.arch
        self.k = cfg.k
        self.d, self.d_sae = d, d_sae
        self.W_enc = nn.Parameter(torch.empty(d, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("mu", torch.zeros(d))
        self.register_buffer("scale", torch.ones(()))
        self.history: pd.DataFrame = pd.DataFrame(columns=list(HISTORY_COLUMNS))

    @property
    def config(self) -> dict:
        """Every hyperparameter, JSON-able (stored as the `/sae` config attribute)."""
        return dict(self.cfg.model_dump(mode="json"), d_in=self.d, d_sae=self.d_sae)

    # --- normalised space (what the weights apply to) ---
    def normalise(self, x_BD: torch.Tensor) -> torch.Tensor:
        return (x_BD - self.mu) * self.scale

    def denormalise(self, xn_BD: torch.Tensor) -> torch.Tensor:
        return xn_BD / self.scale + self.mu

    def pre_acts(self, xn_BD: torch.Tensor) -> torch.Tensor:
        return torch.relu((xn_BD - self.b_dec) @ self.W_enc + self.b_enc)

    def encode_topk(self, xn_BD: torch.Tensor):
        """topk: the K largest ReLU pre-activations per row -> (values_BK, indices_BK)."""
        return self.pre_acts(xn_BD).topk(self.k, dim=-1, sorted=False)

    def decode_sparse(self, vals_BK: torch.Tensor, idx_BK: torch.Tensor) -> torch.Tensor:
        """Gather the K decoder rows of each row (B*K*D work, not B*F*D as a dense decode would)."""
        rows_BKD = self.W_dec[idx_BK]
        return torch.bmm(vals_BK.unsqueeze(1), rows_BKD).squeeze(1) + self.b_dec

    def encode_norm(self, xn_BD: torch.Tensor) -> torch.Tensor:
        if self.arch == "topk":
            vals_BK, idx_BK = self.encode_topk(xn_BD)
            return torch.zeros(xn_BD.shape[0], self.d_sae, dtype=xn_BD.dtype, device=xn_BD.device).scatter_(
                -1, idx_BK, vals_BK
            )
        return self.pre_acts(xn_BD)

    # --- raw space (public) ---
    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        return self.encode_norm(self.normalise(x_BD))

    def decode(self, acts_BF: torch.Tensor) -> torch.Tensor:
        return self.denormalise(acts_BF @ self.W_dec + self.b_dec)

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x_BD))

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self):
        self.W_dec.data /= self.W_dec.data.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self):
        # Keeps unit-norm rows on the sphere under Adam; sparsify / dictionary_learning, after Gao et al. 2024.
        if self.W_dec.grad is None:
            return
        parallel_F = (self.W_dec.grad * self.W_dec.data).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel_F * self.W_dec.data


def _init_weights(sae: SAE, gen: torch.Generator):
    W_FD = torch.randn(sae.d_sae, sae.d, generator=gen)
    W_FD /= W_FD.norm(dim=-1, keepdim=True)
    if sae.arch == "relu_l1":
        # Decoder rows of norm 0.1 (Anthropic April 2024 update); the decoder starts as the encoder transposed.
        W_FD *= 0.1
    sae.W_dec.data.copy_(W_FD)
    sae.W_enc.data.copy_(W_FD.T)  # encoder = decoder transposed (Gao et al. 2024 §A.1 for topk too)


def _normalisation(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu_D = X.mean(0)
    ms = ((X - mu_D) ** 2).sum(-1).mean()
    scale = torch.sqrt(X.shape[1] / ms.clamp_min(1e-12))
    return mu_D, scale


DECAY_FRAC = 0.2


def _lr_factor(step: int, steps: int) -> float:
    # Short linear warm-up, then constant, then linear decay over the last 20% (Anthropic April 2024 update).
    warm = max(1, steps // 100)
    if step < warm:
        return (step + 1) / warm
    decay_from = int((1 - DECAY_FRAC) * steps)
    if step >= decay_from:
        return max(0.0, (steps - step) / max(1, steps - decay_from))
    return 1.0


def _gather_acts(sae: SAE, xc_BD, idx_BK):
    """Differentiable pre-activations at the chosen (row, feature) pairs only: B*K*D work, and the backward
    pass touches only those K encoder columns per row (Gao et al. 2024 §5 use sparse kernels likewise)."""
    B, K = idx_BK.shape
    W_DN = sae.W_enc.index_select(1, idx_BK.reshape(-1))  # columns of W_enc, N = B*K
    x_DN = xc_BD.t().repeat_interleave(K, dim=1)
    return ((x_DN * W_DN).sum(0).view(B, K) + sae.b_enc[idx_BK]).relu()


def _topk_loss(sae: SAE, xn_BD, dead_F, aux_k):
    xc_BD = xn_BD - sae.b_dec
    with torch.no_grad():  # choose the active features with one dense matmul, no graph
        pre_BF = torch.addmm(sae.b_enc, xc_BD, sae.W_enc).relu_()
        idx_BK = pre_BF.topk(sae.k, dim=-1, sorted=False).indices
    vals_BK = _gather_acts(sae, xc_BD, idx_BK)
    xhat_BD = sae.decode_sparse(vals_BK, idx_BK)
    err_BD = xn_BD - xhat_BD
    total_var = (xn_BD - xn_BD.mean(0)).pow(2).sum()
    fvu = err_BD.pow(2).sum() / total_var
    loss = fvu
    n_dead = int(dead_F.sum())
    if n_dead > 0 and sae.cfg.aux_coef > 0:
        # AuxK, Gao et al. 2024 §A.2: the top-k_aux dead latents reconstruct the residual.
        # Dense over the dead columns only: with many dead latents a gather of B*k_aux*D weights
        # costs far more memory traffic than one matmul (measured 7x slower steps).
        k_aux = min(aux_k, n_dead)
        dead_N = dead_F.nonzero().squeeze(1)
        pre_BN = torch.addmm(sae.b_enc[dead_N], xc_BD, sae.W_enc[:, dead_N]).relu()
        aux_vals_BK, sel_BK = pre_BN.topk(k_aux, dim=-1, sorted=False)
        aux_BN = torch.zeros_like(pre_BN).scatter(1, sel_BK, aux_vals_BK)
        ehat_BD = aux_BN @ sae.W_dec[dead_N]
        e_BD = err_BD.detach()
        aux = (ehat_BD - e_BD).pow(2).sum() / (e_BD - e_BD.mean(0)).pow(2).sum().clamp_min(1e-12)
        # scaled as sparsify does: min(num_dead / k_aux, 1)
        loss = loss + sae.cfg.aux_coef * min(n_dead / aux_k, 1.0) * aux
    with torch.no_grad():
        active_BK = vals_BK > 0
        l0 = active_BK.sum(-1).float().mean()
        fired_F = torch.zeros(sae.d_sae, dtype=torch.bool, device=xn_BD.device)
        fired_F[idx_BK[active_BK]] = True
    return loss, fvu, l0, fired_F


def _relu_l1_loss(sae: SAE, xn_BD, l1_coef):
    acts_BF = sae.pre_acts(xn_BD)
    xhat_BD = acts_BF @ sae.W_dec + sae.b_dec
    err_BD = xn_BD - xhat_BD
    sse = err_BD.pow(2).sum(-1).mean()
    # L1 weighted by decoder-row norms (Anthropic April 2024 update), so shrinking W_dec cannot cheat it.
    l1 = (acts_BF * sae.W_dec.norm(dim=-1)).sum(-1).mean()
    loss = sse + l1_coef * l1
    fvu = err_BD.pow(2).sum() / (xn_BD - xn_BD.mean(0)).pow(2).sum()
    l0 = (acts_BF > 0).sum(-1).float().mean()
    return loss, fvu, l0, (acts_BF > 0).any(0)


def fit(X: np.ndarray, cfg: SAEConfig, device: str = "cpu", progress=None) -> SAE:
    """Train an SAE on the rows of X (n, d). Seeded by cfg.seed: same config, same weights on CPU.
    `progress(stage, fraction)` is called as training advances. Raises ValueError on NaN divergence."""
    if resolve_device(device) != "cpu":
        return _fit(X, cfg, device, progress)
    # One intra-op thread on the CPU: the per-step ops are small, and with a second thread OpenMP's
    # spin-waits made training 2-40x slower whenever anything else used a core (measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(X, cfg, device, progress)
    finally:
        torch.set_num_threads(threads)


def _fit(X: np.ndarray, cfg: SAEConfig, device: str, progress) -> SAE:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"sae: need a 2-D matrix with at least 2 rows, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("sae: input vectors contain NaN or inf")
    n, d = X.shape
    d_sae = check_config(cfg, d)
    device = resolve_device(device)
    gen = torch.Generator().manual_seed(cfg.seed)

    sae = SAE(d, d_sae, cfg)
    _init_weights(sae, gen)
    X_ND = torch.from_numpy(X)
    mu_D, scale = _normalisation(X_ND)
    sae.mu.copy_(mu_D)
    sae.scale.copy_(scale)
    sae.to(device)
    Xn_ND = ((X_ND - mu_D) * scale).to(device)

    steps = default_steps(n, d, d_sae, cfg)
    batch = min(cfg.batch_size, n)
    aux_k = cfg.aux_k or max(1, d // 2)  # Gao et al. 2024 §A.2 use k_aux = d/2
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps))
    since_fired_F = torch.zeros(d_sae, dtype=torch.long, device=device)
    warm_steps = max(1, int(cfg.l1_warmup_frac * steps))

    rows = {c: [] for c in HISTORY_COLUMNS}
    perm = torch.randperm(n, generator=gen)
    pos = 0
    bar = tqdm(range(steps), desc=f"SAE {cfg.arch} F={d_sae}", leave=False, mininterval=1.0)
    for step in bar:
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        xn_BD = Xn_ND[perm[pos : pos + batch].to(device)]
        pos += batch

        if cfg.arch == "topk":
            dead_F = since_fired_F >= cfg.dead_steps
            loss, fvu, l0, fired_F = _topk_loss(sae, xn_BD, dead_F, aux_k)
        else:
            l1_coef = cfg.l1 * min(1.0, (step + 1) / warm_steps)  # L1 warm-up (Anthropic April 2024 update)
            loss, fvu, l0, fired_F = _relu_l1_loss(sae, xn_BD, l1_coef)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            bar.close()
            raise ValueError(f"SAE training diverged at step {step} (loss is NaN); lower lr")

        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.arch == "topk":
            sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sched.step()
        if cfg.arch == "topk":
            sae.set_decoder_norm_to_unit_norm()
        since_fired_F += 1
        since_fired_F[fired_F] = 0

        if step % cfg.log_every == 0 or step == steps - 1:
            fvu_value = float(fvu.detach())
            rows["step"].append(step)
            rows["loss"].append(loss_value)
            rows["mse"].append(fvu_value * float(xn_BD.var(0, unbiased=False).sum()) / d)
            rows["l0"].append(float(l0))
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


@torch.no_grad()
def encode_numpy(sae: SAE, X: np.ndarray, batch: int = 4096) -> sp.csr_matrix:
    """Activations of every row of X (raw vectors) as float32 CSR (n, d_sae)."""
    dev = sae.W_enc.device
    blocks = []
    for s in range(0, X.shape[0], batch):
        x_BD = torch.as_tensor(np.asarray(X[s : s + batch], dtype=np.float32), device=dev)
        xn_BD = sae.normalise(x_BD)
        if sae.arch == "topk":
            vals_BK, idx_BK = sae.encode_topk(xn_BD)
            vals, idx = vals_BK.cpu().numpy(), idx_BK.cpu().numpy()
            B, K = vals.shape
            m = sp.csr_matrix((vals.ravel(), idx.ravel(), np.arange(0, B * K + 1, K)), shape=(B, sae.d_sae))
        else:
            m = sp.csr_matrix(sae.pre_acts(xn_BD).cpu().numpy())
        m.eliminate_zeros()
        m.sort_indices()
        blocks.append(m)
    if not blocks:
        return sp.csr_matrix((0, sae.d_sae), dtype=np.float32)
    out = sp.vstack(blocks, format="csr").astype(np.float32)
    out.sort_indices()
    return out


def fvu(sae: SAE, X: np.ndarray, acts: sp.csr_matrix | None = None) -> float:
    """Fraction of variance unexplained over all rows: sum ||x - x_hat||^2 / sum ||x - mean||^2 (raw space;
    the normalisation is a uniform scale, so the value is the same in normalised space)."""
    acts = encode_numpy(sae, X) if acts is None else acts
    W_dec = sae.W_dec.detach().cpu().numpy()
    b_dec = sae.b_dec.detach().cpu().numpy()
    mu, scale = sae.mu.cpu().numpy(), float(sae.scale)
    xhat = (acts @ W_dec + b_dec) / scale + mu
    X = np.asarray(X, dtype=np.float64)
    return float(((X - xhat) ** 2).sum() / ((X - X.mean(0)) ** 2).sum())
