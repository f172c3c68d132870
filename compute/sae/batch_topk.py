"""BatchTopK SAE (Bussmann, Leask & Nanda 2024, "BatchTopK Sparse Autoencoders", arXiv:2412.06410).

Training keeps the k*B largest ReLU pre-activations of the whole batch (k per row on average, so rows can
use more or fewer features), with TopK's unit-norm decoder and AuxK. Inference cannot depend on the batch,
so it keeps every pre-activation above a threshold learned in training: a running estimate of the smallest
positive activation the batch top-k kept (as the paper estimates it; dictionary_learning's
trainers/batch_top_k.py sets it to the first batch's minimum, then averages; the step 0.01 of the average
is SAELens' topk_threshold_lr).

Rows at a common norm (`row_norm`, the default): the encoder sees each centred row x - b_dec scaled to norm
sqrt(D), as the authors' reference code standardises every input row (github.com/bartbussmann/BatchTopK,
`input_unit_norm`), and the codes are scaled back by the row's norm, so x_hat = codes @ W_dec + b_dec as for
every architecture. The batch top-k and the threshold then compare rows by shape, not by size. Without it the
batch's k*B activations go where pre-activations are largest, and those grow with a row's norm: on the
default GloVe run a word's L0 followed its norm, low-norm words kept a few features and reconstructed badly,
and the FVU was 0.171 against TopK's 0.148; with it, 0.141 (benchmarks/sae_archs.py)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from compute.sae.base import SAE
from compute.sae.topk import TopKSAE

CANDIDATE_BOUND = 0.8


class BatchTopKSAE(TopKSAE):
    arch = "batch_topk"
    ARRAYS: ClassVar[dict[str, str]] = {**TopKSAE.ARRAYS, "threshold": "threshold"}

    def __init__(self, d: int, d_sae: int, cfg):
        super().__init__(d, d_sae, cfg)
        self.register_buffer("threshold", torch.tensor(-1.0))  # < 0: not estimated yet
        self.last_cutoff = 0.0  # smallest activation the last training batch kept

    def encoder_input(self, xc_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the encoder sees, each row's scale (B, 1)): the centred rows scaled to norm sqrt(D) and their
        norms / sqrt(D) with `row_norm`, else the rows as they are and ones (exact: x / 1 = x * 1 = x)."""
        if not self.cfg.row_norm:
            return xc_BD, torch.ones_like(xc_BD[:, :1])
        r_B1 = xc_BD.norm(dim=-1, keepdim=True).clamp_min(1e-12) / math.sqrt(self.d)
        return xc_BD / r_B1, r_B1

    def encode_norm(self, xn_BD: torch.Tensor) -> torch.Tensor:
        """JumpReLU-like: relu(pre) where pre > threshold, else 0; times the row's scale."""
        uc_BD, r_B1 = self.encoder_input(xn_BD - self.b_dec)
        pre_BF = torch.relu(uc_BD @ self.W_enc + self.b_enc)
        return pre_BF * (pre_BF > self.threshold) * r_B1

    encode_csr = SAE.encode_csr  # from the dense codes: rows have no fixed count of features
    active_codes = SAE.active_codes

    def selection_pre_acts(self, xn_BD: torch.Tensor) -> torch.Tensor:
        # the row norms depend on b_dec: the centred rows are the input
        return torch.addmm(self.b_enc, self.encoder_input(xn_BD - self.b_dec)[0], self.W_enc).relu()

    def select(self, pre_BF: torch.Tensor) -> torch.Tensor:
        """Flat indices of the k*B largest entries of pre_BF. Exact; a top-k over the entries above a bound
        below the previous batch's cutoff when at least k*B are above it (measured 3x faster than a top-k
        over all B*F), else over all."""
        n, flat_M = self.cfg.k * pre_BF.shape[0], pre_BF.flatten()
        if self.last_cutoff > 0:
            cand_M = (flat_M > CANDIDATE_BOUND * self.last_cutoff).nonzero().squeeze(1)
            if len(cand_M) >= n:  # then the k*B largest all lie above the bound
                return cand_M[flat_M[cand_M].topk(n, sorted=False).indices]
        return flat_M.topk(n, sorted=False).indices

    def sparse_forward(self, xc_BD: torch.Tensor, pre_BF: torch.Tensor):
        B, F = pre_BF.shape
        with torch.no_grad():
            flat_N = self.select(pre_BF).sort().values  # sorted: each row's features in one run, for the bags
        row_N, feat_N = flat_N // F, flat_N % F
        vals_N = pre_BF.flatten()[flat_N]
        codes_N = vals_N * self.encoder_input(xc_BD)[1][row_N, 0]
        # Each row's bag of decoder rows, weighted and summed: N*D work as in TopK's decode_sparse.
        counts_B = torch.bincount(row_N, minlength=B)
        offsets_B = counts_B.cumsum(0) - counts_B
        x_hat_BD = nn.functional.embedding_bag(feat_N, self.W_dec, offsets_B, mode="sum", per_sample_weights=codes_N)
        x_hat_BD = x_hat_BD + self.b_dec
        with torch.no_grad():
            active_N = vals_N > 0
            fired_F = torch.zeros(self.d_sae, dtype=torch.bool, device=xc_BD.device)
            fired_F[feat_N[active_N]] = True
            if active_N.any():
                min_kept = vals_N[active_N].min()
                self.last_cutoff = float(min_kept)
                self.update_threshold(min_kept)
        return x_hat_BD, active_N.sum().float() / B, fired_F

    def aux_loss(self, xc_BD, err_BD, dead_F, k_aux: int) -> torch.Tensor:
        """AuxK on the rows the encoder sees: the dead latents reconstruct the residual at the same scale."""
        uc_BD, r_B1 = self.encoder_input(xc_BD)
        return super().aux_loss(uc_BD, err_BD / r_B1, dead_F, k_aux)

    @torch.no_grad()
    def update_threshold(self, min_kept: torch.Tensor) -> None:
        if self.threshold < 0:
            self.threshold.copy_(min_kept)
        else:
            self.threshold.lerp_(min_kept, self.cfg.threshold_lr)
