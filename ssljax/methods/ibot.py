"""iBOT: DINO on [CLS] plus masked patch-token self-distillation with an online tokenizer.

"iBOT: Image BERT Pre-Training with Online Tokenizer" (Zhou et al., 2022). The shared
implementation, with the reference conventions it follows, is `ssljax.methods._distill`.

The student sees the 2 global crops with block-wise masked patches (BEiT-style blocks from the
pipeline, `ViewSpec.mask='block'`; masked patches are replaced by the ViT's learned mask
token) and the local crops unmasked; the teacher sees the global crops unmasked.
Loss = cls_weight * dino_loss(student [CLS] of all crops, teacher [CLS] of the global crops)
     + patch_weight * ibot_patch_loss(student patches, teacher patches of the same crop, mask),
each with its own centre (EMA momentum 0.9 over the global batch; the patch centre averages all
teacher patch tokens, as the reference does) and its own teacher temperature warm-up.

One mask per record comes from the pipeline: crop 0 uses it, crop 1 its 180-degree rotation on
the patch grid (`second_mask`), and a fraction `mask_probability` of the crops keep their mask.

Reference hyper-parameters (iBOT ViT-S/16 recipe): shared head, out_dim 8192, norm_last_layer
False, teacher temperatures 0.04 -> 0.07 over 30 epochs for [CLS] and patches, 10 local crops,
global scale (0.25, 1), local scale (0.05, 0.25) (as we read the README's ViT-S/16 command), mask ratio U(0.1, 0.5) on half of the crops (ssljax: a fixed ratio, see
`_distill`), lambda1 = lambda2 = 1, momentum 0.996 -> 1, AdamW lr 5e-4 x batch/256, weight decay
0.04 (-> 0.4 in the reference), clip 3.0, drop path 0.1.
"""
from __future__ import annotations

import ml_collections

from ssljax.methods import _distill
from ssljax.methods import dino


def ibot_config() -> dict:
  """DINO's keys plus iBOT's, with the defaults of iBOT's ViT-S/16 recipe."""
  c = dino.dino_config()
  c.update(
      out_dim=8192,
      norm_last_layer=False,
      teacher_temp=0.07,
      warmup_teacher_temp_steps=0,
      global_crops_scale=(0.25, 1.0),
      local_crops=10,
      local_crops_scale=(0.05, 0.25),
      shared_head=True,              # one head for [CLS] and patches; False: separate patch_head
      patch_out_dim=8192,            # Kp, used when shared_head is False
      teacher_patch_temp=0.07,
      warmup_teacher_patch_temp=0.04,
      cls_weight=1.0,                # iBOT's lambda1
      patch_weight=1.0,              # iBOT's lambda2
      mask_ratio=0.3,                # fraction of patches masked in a masked crop
      mask_probability=0.5,          # fraction of global crops that are masked
      second_mask="rot180",          # how crop 1's mask derives from the record's mask
  )
  return c


class IBOT(_distill.SelfDistillation):
  """iBOT. Params: {'backbone', 'head'[, 'patch_head']}; state adds 'patch_center'."""

  name = "ibot"
  terms = (_distill.DinoTerm(), _distill.PatchTerm())

  @staticmethod
  def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(ibot_config())


METHOD = IBOT
