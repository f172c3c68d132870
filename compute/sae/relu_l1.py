"""ReLU SAE with an L1 penalty (Anthropic, "Towards Monosemanticity" 2023 and its April 2024 training
update): every positive pre-activation is kept; sparsity comes from the decoder-norm-weighted L1 term."""

from __future__ import annotations

import torch

from compute.sae.base import SAE, StepContext, StepOutput, batch_fvu


class ReluL1SAE(SAE):
    arch = "relu_l1"

    def encode_norm(self, xn_BD: torch.Tensor) -> torch.Tensor:
        return self.pre_acts(xn_BD)

    @torch.no_grad()
    def init_weights(self, gen: torch.Generator) -> None:
        super().init_weights(gen)
        # Decoder rows of norm 0.1 (April 2024 update); the encoder stays the decoder's direction transposed.
        self.W_dec.data *= 0.1
        self.W_enc.data *= 0.1

    def training_loss(self, xn_BD: torch.Tensor, ctx: StepContext) -> StepOutput:
        acts_BF = self.pre_acts(xn_BD)
        x_hat_BD = acts_BF @ self.W_dec + self.b_dec
        err_BD = xn_BD - x_hat_BD
        sse = err_BD.pow(2).sum(-1).mean()
        # L1 weighted by decoder-row norms (April 2024 update), so shrinking W_dec cannot cheat it.
        l1 = (acts_BF * self.W_dec.norm(dim=-1)).sum(-1).mean()
        warm_steps = max(1, int(self.cfg.l1_warmup_frac * ctx.steps))
        l1_coef = self.cfg.l1 * min(1.0, (ctx.step + 1) / warm_steps)  # L1 warm-up (April 2024 update)
        loss = sse + l1_coef * l1
        fired_BF = acts_BF > 0
        return StepOutput(loss, batch_fvu(xn_BD, err_BD), fired_BF.sum(-1).float().mean(), fired_BF.any(0))
