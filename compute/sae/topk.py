"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): the k largest ReLU
pre-activations of each row, unit-norm decoder rows, AuxK loss on dead latents."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from compute.sae.base import SAE, StepContext, StepOutput, batch_fvu


class TopKSAE(SAE):
    arch = "topk"

    def check_width(self) -> None:
        if self.cfg.k > self.d_sae:
            raise ValueError(f"sae.k: k ({self.cfg.k}) must not exceed d_sae ({self.d_sae})")

    def encode_topk(self, xn_BD: torch.Tensor):
        """The K largest ReLU pre-activations per row -> (values_BK, indices_BK)."""
        return self.pre_acts(xn_BD).topk(self.cfg.k, dim=-1, sorted=False)

    def encode_norm(self, xn_BD: torch.Tensor) -> torch.Tensor:
        vals_BK, idx_BK = self.encode_topk(xn_BD)
        return torch.zeros(xn_BD.shape[0], self.d_sae, dtype=xn_BD.dtype, device=xn_BD.device).scatter_(
            -1, idx_BK, vals_BK
        )

    def encode_csr(self, xn_BD: torch.Tensor) -> sp.csr_matrix:
        vals_BK, idx_BK = self.encode_topk(xn_BD)
        vals, idx = vals_BK.cpu().numpy(), idx_BK.cpu().numpy()
        B, K = vals.shape
        return sp.csr_matrix((vals.ravel(), idx.ravel(), np.arange(0, B * K + 1, K)), shape=(B, self.d_sae))

    def active_codes(self, x_BD: torch.Tensor):
        """As SAE.active_codes, from the k pairs per row: no dense (B, F) codes, nonzero or decode. The ReLU after
        the top-k (B*K values), as in training; the same activations as `encode`, bit for bit."""
        vals_BK, idx_BK = self.affine_pre_acts(self.normalise(x_BD)).topk(self.cfg.k, dim=-1, sorted=False)
        vals_BK = vals_BK.relu_()
        x_hat_BD = self.denormalise(self.decode_sparse(vals_BK, idx_BK))
        row_N, k_N = torch.nonzero(vals_BK > 0, as_tuple=True)
        return row_N, idx_BK[row_N, k_N], vals_BK[row_N, k_N], x_hat_BD

    def decode_sparse(self, vals_BK: torch.Tensor, idx_BK: torch.Tensor) -> torch.Tensor:
        """Sum the K decoder rows of each row, weighted (B*K*D work, not B*F*D as a dense decode would).
        embedding_bag does the gather and the sum in one kernel, forward and backward: on the CPU a
        gather-then-bmm cost 3x more per step than the whole dense encoder (benchmarks/sae_step.py)."""
        return F.embedding_bag(idx_BK, self.W_dec, per_sample_weights=vals_BK, mode="sum") + self.b_dec

    def selection_pre_acts(self, xn_BD: torch.Tensor) -> torch.Tensor:
        """Pre-activations (B, F) of the normalised batch before the ReLU, with their graph: `sparse_forward`
        selects from them and its values' gradient flows back through this one dense matmul. Written as
        xn @ W_enc + (b_enc - b_dec @ W_enc), which is (xn - b_dec) @ W_enc + b_enc: the input then needs no
        gradient, so b_dec's costs a vector-matrix product instead of a (B, F) x (F, D) matmul."""
        return torch.addmm(self.b_enc - self.b_dec @ self.W_enc, xn_BD, self.W_enc)

    def sparse_forward(self, xc_BD: torch.Tensor, pre_BF: torch.Tensor):
        """Reconstruction of the centred batch from the k largest of `pre_BF` per row: (x_hat_BD, l0, fired_F).
        The ReLU comes after the top-k, on B*K values: it keeps the order, and a row with fewer than k positive
        pre-activations gets zeros either way."""
        vals_BK, idx_BK = pre_BF.topk(self.cfg.k, dim=-1, sorted=False)
        vals_BK = vals_BK.relu()
        x_hat_BD = self.decode_sparse(vals_BK, idx_BK)
        with torch.no_grad():
            active_BK = vals_BK > 0
            fired_F = torch.zeros(self.d_sae, dtype=torch.bool, device=xc_BD.device)
            fired_F[idx_BK[active_BK]] = True
        return x_hat_BD, active_BK.sum(-1).float().mean(), fired_F

    def training_loss(self, xn_BD: torch.Tensor, ctx: StepContext) -> StepOutput:
        xc_BD = xn_BD - self.b_dec
        x_hat_BD, l0, fired_F = self.sparse_forward(xc_BD, self.selection_pre_acts(xn_BD))
        err_BD = xn_BD - x_hat_BD
        fvu = batch_fvu(xn_BD, err_BD)
        loss = fvu
        n_dead = int(ctx.dead_F.sum())
        if n_dead > 0 and self.cfg.aux_coef > 0:
            aux_k = self.cfg.aux_k or max(1, self.d // 2)  # Gao et al. 2024 §A.2 use k_aux = d/2
            # scaled as sparsify does: min(num_dead / k_aux, 1)
            loss = loss + self.cfg.aux_coef * min(n_dead / aux_k, 1.0) * self.aux_loss(
                xc_BD, err_BD, ctx.dead_F, min(aux_k, n_dead)
            )
        return StepOutput(loss, fvu, l0, fired_F)

    def aux_loss(self, xc_BD, err_BD, dead_F, k_aux: int) -> torch.Tensor:
        """AuxK, Gao et al. 2024 §A.2: the top-k_aux dead latents reconstruct the residual; normalised MSE.
        Dense over the dead columns only: with many dead latents a gather of B*k_aux*D weights costs far
        more memory traffic than one matmul (measured 7x slower steps)."""
        dead_N = dead_F.nonzero().squeeze(1)
        pre_BN = torch.addmm(self.b_enc[dead_N], xc_BD, self.W_enc[:, dead_N]).relu()
        aux_vals_BK, sel_BK = pre_BN.topk(k_aux, dim=-1, sorted=False)
        aux_BN = torch.zeros_like(pre_BN).scatter(1, sel_BK, aux_vals_BK)
        e_hat_BD = aux_BN @ self.W_dec[dead_N]
        e_BD = err_BD.detach()
        return (e_hat_BD - e_BD).pow(2).sum() / (e_BD - e_BD.mean(0)).pow(2).sum().clamp_min(1e-12)

    def before_optimizer_step(self) -> None:
        self.remove_gradient_parallel_to_decoder_directions()

    def after_optimizer_step(self) -> None:
        self.set_decoder_norm_to_unit_norm()
