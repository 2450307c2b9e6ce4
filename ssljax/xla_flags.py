"""ssljax's default XLA:CPU flags, applied by the command lines before JAX starts its backend.

XLA:CPU (jaxlib 0.10) hands convolutions to YNNPACK by default. On the 2-core AVX2 machines ssljax
was first developed on, YNNPACK's convolutions were 3.5-12x slower (several runs) than XLA's own
(Eigen) ones in a 3x3 conv stack's forward + backward at ResNet-stage shapes, and made a CIFAR
ResNet-18 SimCLR step 3.4-4x slower (benchmarks/xla_cpu_flags.py, section "XLA:CPU library fusions"
of BENCHMARKS.md); on a 2-core AVX-512 machine 1.7x and 1.4x. Removing only the individual
convolutions from YNNPACK's fusion types keeps YNNPACK for dots, elementwise and reduce fusions and
gives convolutions back to Eigen. Turning YNNPACK off altogether was measured too
(benchmarks/xla_cpu_flags.py): 1.03-1.13x on a ViT-Tiny DINO step, but 0.89-0.95x on ResNet-18 and
0.93x on the quickstart's tiny ViT; so was taking only its reduce fusions away (1.12x on a ViT-Tiny
DINO step at batch 128, but 0.88x on ResNet-18 and 0.92x on ViT-Tiny at batch 32); so was taking
away only its dot fusions (1.22x on ViT-Tiny DINO at batch 32, 0.98x at batch 128, 0.86x on
ResNet-18). Where a reduction was pathological (sums over the leading axis of DINO's 65536-wide
head arrays: the weight-norm column norms and their gradient, the teacher centre, a batch-mean
metric), the code computes it as a matvec instead (`ssljax.reductions`, used by
`ssljax.models.heads.WeightNormDense` and `ssljax.losses.update_center`); `ssljax.losses.dino_loss`
sums its view pairs without the contraction that XLA:CPU laid out with transposing copies of both
[V, N, K] arrays. ViTs have no convolution: their patch embedding is a matmul
(`ssljax.models.vit.PatchEmbed`). ResNets route each convolution input through
`ssljax.models.resnet.computed_once`, so that XLA:CPU stores it once instead of recomputing its
norm + ReLU chain inside the weight-gradient transposes, and their stride-2 convolutions compute
the input gradient without dilating the output gradient
(`ssljax.models.resnet.conv_general_dilated`).

`python -m ssljax.main`, `python -m ssljax.finetune` and the benchmarks call `apply_cpu_defaults()`
first. In your own script or notebook, call it before the first JAX computation:

  import ssljax.xla_flags; ssljax.xla_flags.apply_cpu_defaults()

Opt out with SSLJAX_XLA_CPU_DEFAULTS=0. A flag you set yourself in XLA_FLAGS always wins: a default
is added only when XLA_FLAGS does not name that flag. Flags only matter on the CPU backend; GPU and
TPU ignore them. The flags change which library computes a convolution, so results differ from a
run without them in the last bits (and then, through training, more), as any backend change does.
"""
from __future__ import annotations

import os
import warnings
from typing import Mapping, MutableMapping

ENV_OPT_OUT = "SSLJAX_XLA_CPU_DEFAULTS"
CPU_DEFAULTS = (
    # YNNPACK keeps dots, elementwise and reduce fusions; convolutions go back to XLA's Eigen ones.
    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
)


def switched_off(environ: Mapping[str, str], name: str) -> bool:
  """True when environment variable `name` turns an ssljax default off (0 / false / no / off)."""
  return environ.get(name, "1").strip().lower() in ("0", "false", "no", "off")


def _flag_name(flag: str) -> str:
  return flag.split("=", 1)[0]


def apply_cpu_defaults(environ: MutableMapping[str, str] | None = None) -> list[str]:
  """Appends ssljax's XLA:CPU defaults to $XLA_FLAGS; returns the flags it added.

  Args:
    environ: the environment to edit (os.environ by default; a dict in tests).

  Nothing is added when SSLJAX_XLA_CPU_DEFAULTS=0, or for a flag that XLA_FLAGS already names.
  Warns (and still edits the environment) when JAX's backends are already running, because XLA
  reads XLA_FLAGS once, when the first backend starts.
  """
  env = os.environ if environ is None else environ
  if switched_off(env, ENV_OPT_OUT):
    return []
  current = env.get("XLA_FLAGS", "")
  named = {_flag_name(f) for f in current.split()}
  added = [f for f in CPU_DEFAULTS if _flag_name(f) not in named]
  if not added:
    return []
  env["XLA_FLAGS"] = " ".join([current.strip()] + added).strip()
  if environ is None and _backends_started():
    warnings.warn(f"ssljax.xla_flags.apply_cpu_defaults() was called after JAX started its backends, so "
                  f"{added} take effect only in new processes; call it before the first JAX computation.",
                  stacklevel=2)
  return added


def _backends_started() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without this helper: cannot tell, do not warn
    return False
