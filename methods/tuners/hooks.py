"""Training-loop hooks for the peft tuners that need one, reached through the method interface
(tuners.yaml names them with `hooks:`)."""

from __future__ import annotations

import torch

from bench.errors import BenchError


class AdaLoraHooks:
    """AdaLoRA (Zhang et al. 2023) allocates its rank budget during training: peft's AdaLoraModel does it in
    `update_and_allocate(step)` (after the optimizer step, while the gradients are still there) and adds the
    orthogonality penalty on P and Q in its own `forward`. bench attaches the tuner without that wrapper's
    forward, so the penalty is computed here exactly as peft computes it (mean over P and Q of
    ||P P^T - I||_F, ||Q^T Q - I||_F, times orth_reg_weight)."""

    def loss_term(self, model, cfg, step: int, total_steps: int):
        if not cfg.orth_reg_weight:
            return None
        norms = []
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                cov = p @ p.T if "lora_A" in name else p.T @ p
                eye = torch.eye(*cov.shape, dtype=cov.dtype, device=cov.device)
                norms.append(torch.linalg.matrix_norm(cov - eye, "fro"))
        return cfg.orth_reg_weight * torch.stack(norms).mean() if norms else None

    def after_step(self, model, cfg, step: int, total_steps: int) -> None:
        tuner = model.__dict__["bench_peft_tuner"]
        config = tuner.peft_config["default"]
        if config.total_step != total_steps:  # known only once the loop has the data: set at the first step
            if cfg.tinit >= total_steps - cfg.tfinal:
                raise BenchError(
                    f"{self.name}: tinit={cfg.tinit} and tfinal={cfg.tfinal} leave no budgeting phase in "
                    f"{total_steps} training steps (need tinit < steps - tfinal)"
                )
            config.total_step = total_steps
        tuner.update_and_allocate(step)


HOOKS = {"adalora": AdaLoraHooks}
