"""DINO: self-distillation with no labels, multi-crop, a centred and sharpened EMA teacher.

"Emerging Properties in Self-Supervised Vision Transformers" (Caron et al., 2021). The shared
implementation, with the reference conventions it follows, is `ssljax.methods._distill`.

Reference hyper-parameters (main_dino.py, ViT-S/16): DINO head 65536 prototypes, hidden 2048,
bottleneck 256, 3 layers, weight-normalised last layer with its gain fixed; student temperature
0.1, teacher 0.04 (0.07 with a 30-epoch warm-up from 0.04 for long runs); teacher momentum 0.996
cosine to 1; centre momentum 0.9; 2 global crops of scale (0.4, 1) and 8 local crops of 96 px,
scale (0.05, 0.4); last layer frozen for the first epoch; AdamW, lr 5e-4 x batch/256 after a
10-epoch warm-up, weight decay 0.04 (the reference raises it to 0.4 along a cosine; ssljax keeps
it constant), gradient clipping 3.0 (the reference clips each parameter tensor's norm; ssljax's
optimizer clips the global norm), stochastic depth 0.1 in the student only.

Loss: `ssljax.losses.dino_loss(student [2 + L, B, K], teacher [2, B, K], center [K])` with the
teacher temperature of `losses`' linear warm-up; the centre is `losses.update_center` over the
teacher outputs of the global batch.
"""
from __future__ import annotations

import ml_collections

from ssljax.methods import _distill


def dino_config() -> dict:
  """DINO's keys with the defaults of the reference ViT-S/16 recipe (main_dino.py)."""
  return dict(
      out_dim=65536,                 # K prototypes of the DINO head
      hidden_dim=2048,
      bottleneck_dim=256,
      head_layers=3,
      norm_last_layer=True,          # weight-norm gain fixed to 1
      use_bn_in_head=False,          # BatchNorm in the head's MLP (the reference's option)
      student_temp=0.1,
      teacher_temp=0.04,             # 0.07 for long ViT runs (with a 30-epoch warm-up)
      warmup_teacher_temp=0.04,
      warmup_teacher_temp_steps=0,
      momentum=0.996,                # EMA teacher momentum, cosine to 1 over total_steps
      center_momentum=0.9,
      freeze_last_layer_steps=0,     # the reference: one epoch
      global_crops_scale=(0.4, 1.0),
      local_crops=8,
      local_size=96,
      local_crops_scale=(0.05, 0.4),
      eval_backbone="teacher",       # DINO evaluates the teacher ('teacher' | 'student')
  )


class DINO(_distill.SelfDistillation):
  """DINO. Params: {'backbone', 'head'}; state: {'teacher', 'collections', 'center'}."""

  name = "dino"

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dino_config())


METHOD = DINO
