"""What every SAE architecture shares: the weights, input normalisation, encode/decode in raw space, the
to/from arrays round trip through the store, and the training hooks' defaults.

Shapes in names: B batch, D input dim, F features (d_sae), K active features per row, N (row, feature) pairs.
The weights apply to *normalised* inputs, x_norm = (x - mu) * scale with E||x_norm||^2 = D; `encode` and
`decode` take and return RAW vectors and normalise inside, so the stored weights + normalisation suffice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

HISTORY_COLUMNS = ("step", "loss", "mse", "l0", "fvu", "dead")


@dataclass
class StepContext:
    """What the training loop tells an architecture's loss about the current step."""

    step: int
    steps: int
    dead_F: torch.Tensor  # bool: features that have not fired for cfg.dead_steps steps


@dataclass
class StepOutput:
    loss: torch.Tensor
    fvu: torch.Tensor  # on the training batch
    l0: torch.Tensor  # mean active features per row of the batch
    fired_F: torch.Tensor  # bool: features active on some row of the batch


class SAE(nn.Module):
    """Base class; subclasses set `arch`, implement `encode_norm` and `training_loss`, and may override the
    other hooks. Extra state to store with the weights (a buffer) is added to ARRAYS."""

    arch: ClassVar[str]
    # stored array name (the run's `/sae` group, docs/store.md) -> parameter or buffer
    ARRAYS: ClassVar[dict[str, str]] = {
        "W_enc": "W_enc",
        "b_enc": "b_enc",
        "W_dec": "W_dec",
        "b_dec": "b_dec",
        "norm_mean": "mu",
        "norm_scale": "scale",
    }

    def __init__(self, d: int, d_sae: int, cfg):
        super().__init__()
        self.cfg = cfg
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
    @torch.no_grad()
    def fit_normalisation(self, X_ND: torch.Tensor) -> None:
        """mu = the mean row; scale such that E||(x - mu) * scale||^2 = D."""
        mu_D = X_ND.mean(0)
        ms = ((X_ND - mu_D) ** 2).sum(-1).mean()
        self.mu.copy_(mu_D)
        self.scale.copy_(torch.sqrt(X_ND.shape[1] / ms.clamp_min(1e-12)))

    def normalise(self, x_BD: torch.Tensor) -> torch.Tensor:
        return (x_BD - self.mu) * self.scale

    def denormalise(self, xn_BD: torch.Tensor) -> torch.Tensor:
        return xn_BD / self.scale + self.mu

    def affine_pre_acts(self, xn_BD: torch.Tensor) -> torch.Tensor:
        """Pre-activations (B, F) of normalised rows before the ReLU."""
        return (xn_BD - self.b_dec) @ self.W_enc + self.b_enc

    def pre_acts(self, xn_BD: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.affine_pre_acts(xn_BD))

    def encode_norm(self, xn_BD: torch.Tensor) -> torch.Tensor:
        """Dense activations (B, F) of normalised rows."""
        raise NotImplementedError

    def encode_csr(self, xn_BD: torch.Tensor) -> sp.csr_matrix:
        """Activations of normalised rows as CSR (zeros not stored); architectures may skip the dense (B, F)."""
        return sp.csr_matrix(self.encode_norm(xn_BD).cpu().numpy())

    # --- raw space (public) ---
    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        return self.encode_norm(self.normalise(x_BD))

    def decode(self, acts_BF: torch.Tensor) -> torch.Tensor:
        return self.denormalise(acts_BF @ self.W_dec + self.b_dec)

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x_BD))

    def active_codes(self, x_BD: torch.Tensor):
        """Raw rows -> (row_N, feat_N, val_N, x_hat_BD): their active (row, feature) pairs in row order,
        the pairs' activations and the rows' reconstructions."""
        acts_BF = self.encode(x_BD)
        row_N, feat_N = torch.nonzero(acts_BF > 0, as_tuple=True)
        return row_N, feat_N, acts_BF[row_N, feat_N], self.decode(acts_BF)

    # --- the round trip through the store ---
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything `from_arrays` needs besides the config: float32 arrays named as in ARRAYS (scalars as
        shape (1,))."""
        out = {}
        for name, attr in self.ARRAYS.items():
            t = getattr(self, attr).detach().cpu()
            out[name] = t.numpy().astype(np.float32).reshape(t.shape or (1,))
        return out

    @classmethod
    def from_arrays(cls, arrays, cfg, history: pd.DataFrame | None = None) -> SAE:
        """The inverse of `to_arrays` (eval mode, on the CPU); `arrays` maps each name in ARRAYS."""
        d, d_sae = np.shape(arrays["W_enc"])
        sae = cls(int(d), int(d_sae), cfg)
        with torch.no_grad():
            for name, attr in cls.ARRAYS.items():
                t = getattr(sae, attr)
                t.copy_(torch.as_tensor(np.asarray(arrays[name], np.float32)).reshape(t.shape))
        if history is not None:
            sae.history = history
        return sae.eval()

    # --- training hooks (compute/sae/train.py calls them) ---
    def check_width(self) -> None:
        """Raise ValueError (one line naming the field) for settings that need d_sae, known only at fit time."""

    @torch.no_grad()
    def init_weights(self, gen: torch.Generator) -> None:
        """Unit-norm decoder rows, encoder = decoder transposed (Gao et al. 2024 §A.1)."""
        W_FD = torch.randn(self.d_sae, self.d, generator=gen)
        W_FD /= W_FD.norm(dim=-1, keepdim=True)
        self.W_dec.data.copy_(W_FD)
        self.W_enc.data.copy_(W_FD.T)

    @torch.no_grad()
    def freeze_decoder(self) -> None:
        """Fix the decoder at unit-norm rows (rescaling any architecture's initial row norm, which frozen
        would only rescale the codes) with the encoder their transpose, and exclude W_dec from training."""
        self.set_decoder_norm_to_unit_norm()
        self.W_enc.data.copy_(self.W_dec.data.T)
        self.W_dec.requires_grad_(False)

    def training_loss(self, xn_BD: torch.Tensor, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def before_optimizer_step(self) -> None:
        """After backward, before Adam's step (e.g. to edit gradients)."""

    def after_optimizer_step(self) -> None:
        """After Adam's step (e.g. to re-project weights or update running estimates)."""

    # --- helpers the architectures share ---
    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self):
        if not self.W_dec.requires_grad:
            return  # frozen (freeze_decoder): the rows stay exactly as initialised
        self.W_dec.data /= self.W_dec.data.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self):
        # Keeps unit-norm rows on the sphere under Adam; sparsify / dictionary_learning, after Gao et al. 2024.
        if self.W_dec.grad is None:
            return
        parallel_F = (self.W_dec.grad * self.W_dec.data).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel_F * self.W_dec.data


def batch_fvu(xn_BD: torch.Tensor, err_BD: torch.Tensor) -> torch.Tensor:
    """Fraction of variance unexplained on one batch."""
    return err_BD.pow(2).sum() / (xn_BD - xn_BD.mean(0)).pow(2).sum()


@torch.no_grad()
def encode_numpy(sae: SAE, X: np.ndarray, batch: int = 4096) -> sp.csr_matrix:
    """Activations of every row of X (raw vectors) as float32 CSR (n, d_sae), zeros not stored."""
    dev = sae.W_enc.device
    blocks = []
    for s in range(0, X.shape[0], batch):
        x_BD = torch.as_tensor(np.asarray(X[s : s + batch], dtype=np.float32), device=dev)
        m = sae.encode_csr(sae.normalise(x_BD))
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
