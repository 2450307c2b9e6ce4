"""DINOv2: DINO + iBOT + KoLeo, with registers and optional Sinkhorn-Knopp teacher targets.

"DINOv2: Learning Robust Visual Features without Supervision" (Oquab et al., 2024); register
tokens from "Vision Transformers Need Registers" (Darcet et al., 2024), set with
`config.model.num_registers` (the ViT discards them at the output). The shared implementation,
with the reference conventions it follows, is `ssljax.methods._distill`.

Loss = cls_weight * dino_loss([CLS] heads: student global (masked) + local crops vs teacher
       global crops)
     + patch_weight * ibot_patch_loss(masked student patches vs teacher patches of the same crop)
     + koleo_weight * sum over the 2 global crops of koleo(student backbone [CLS] of that crop).
`centering='center'` uses EMA centres (the patch centre over the masked teacher tokens, as the
reference); `centering='sinkhorn_knopp'` replaces both by `losses.sinkhorn_knopp` with epsilon =
the teacher temperature and `sinkhorn_iters` iterations over the global batch (the [CLS] of both
global crops together; the masked patch tokens only).

Reference hyper-parameters (dinov2/configs/ssl_default_config.yaml and the ViT-L/g train
configs): heads 65536 prototypes, hidden 2048, bottleneck 256 (384 for ViT-g), shared head by
default; teacher temperature 0.04 -> 0.07 over 30 epochs; momentum 0.992 -> 1; KoLeo weight 0.1;
iBOT and DINO weights 1; mask ratio U(0.1, 0.5) on half of the crops; 2 global crops scale (0.32, 1), 8
local crops scale (0.05, 0.32); AdamW lr 4e-3 x sqrt(batch/1024), layer-wise lr decay 0.9,
weight decay 0.04 -> 0.2 (constant in ssljax), clip 3.0, last layer frozen for 1 epoch, drop
path 0.3 (ViT-L), 4 registers in the registers paper.
"""
from __future__ import annotations

import ml_collections

from ssljax.methods import _distill
from ssljax.methods import ibot


def dinov2_config() -> dict:
  """iBOT's keys plus DINOv2's, with the defaults of DINOv2's ssl_default_config."""
  c = ibot.ibot_config()
  c.update(
      out_dim=65536,
      patch_out_dim=65536,
      norm_last_layer=True,
      teacher_temp=0.07,
      teacher_patch_temp=0.07,
      warmup_teacher_temp=0.04,
      warmup_teacher_patch_temp=0.04,
      momentum=0.992,
      global_crops_scale=(0.32, 1.0),
      local_crops=8,
      local_crops_scale=(0.05, 0.32),
      mask_ratio=0.3,                # the reference draws U(0.1, 0.5) per crop
      koleo_weight=0.1,
      centering="center",            # 'center' (EMA) | 'sinkhorn_knopp'
      sinkhorn_iters=3,
  )
  return c


class DINOv2(_distill.SelfDistillation):
  """DINOv2. Params: {'backbone', 'head'[, 'patch_head']}; state as iBOT's."""

  name = "dinov2"
  # DINOv2 centres the patch logits over the masked tokens only (iBOT: over all of them).
  terms = (_distill.DinoTerm(), _distill.PatchTerm(center_masked_only=True), _distill.KoLeoTerm())

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dinov2_config())


METHOD = DINOv2
