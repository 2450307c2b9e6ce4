"""Test-wide set-up: 8 simulated CPU devices, so sharded and single-device runs share one process.

The flag must be set before JAX initialises its backends, hence here, before any test imports jax.
Single-device code paths are unaffected: un-sharded computations run on device 0.
"""
import ast
import json
import os
import tempfile

# Tiny models: compile time dominates, so compile with less backend optimisation.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Identical programs built by different tests (e.g. a run and its resumed twin) compile once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "ssljax-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402


def make_tiny_config(method: str = "simclr", model: str = "vit"):
  """A seconds-to-compile config on the digits data (8x8 input, one ViT block, batch 16)."""
  from ssljax.config import base_config
  c = base_config(method=method, model=model)
  c.batch_size = 16
  c.total_steps = 6
  c.log_every = 1
  c.eval_every = 1000
  c.checkpoint_every = 3
  c.progress_bar = False
  c.data.image_size = 8
  if model == "vit":
    c.model.update(dict(patch_size=4, width=32, depth=1, num_heads=2, image_size=8))
  else:
    c.model.update(dict(depth=18, width_multiplier=0.125, cifar_stem=True))
  c.eval.max_examples = 64
  c.eval.linear_epochs = 2
  c.eval.batch_size = 64
  c.eval.random_init = False
  c.optimizer.warmup_steps = 2
  if method == "simclr":
    c.simclr.proj_hidden_dims = (32,)
    c.simclr.proj_dim = 16
  return c


@pytest.fixture
def tiny_config():
  return make_tiny_config


def load_config(name: str):
  """`get_config()` of configs/<name>.py, through the library's loader (ssljax.config_files)."""
  from ssljax import config_files
  return config_files.load(os.path.join(os.path.dirname(__file__), "..", "configs", f"{name}.py"))


def learn_on_digits(config, workdir, margin: float, loss_falls: bool = True):
  """Trains `config` in `workdir`, then asserts what 'a method learns' means in this project.

  Held-out kNN top-1 beats the random-init backbone's by `margin`, the training loss went down
  (unless `loss_falls=False`: a loss against a target that sharpens during the run, as DINO's
  teacher does from the flat start where student and teacher are one network, may end above its
  start while the features improve), and the embedding did not collapse
  (diagnostics.collapse_report at threshold 0.2: per-dim std of normalised embeddings above a
  fifth of the 1/sqrt(D) of a healthy embedding). Returns eval.json's dict.

  Methods whose embeddings are mean-pooled patch tokens (`Method.centre_embeddings`, the masked
  modelling ones) are checked on mean-centred embeddings, as the trainer's collapse warning does:
  the pooled tokens share a large common vector (pooled positional content), so the un-centred
  spread is under the threshold already at random init although nothing has collapsed
  (data2vec_digits: 0.0045 < 0.2 / sqrt(D) = 0.025). MAE's linear probe likewise puts an
  affine-free BatchNorm before the classifier (He et al., 2022, appendix A.2). kNN (cosine) is
  always computed on the un-centred features.

  Seed sweeps: `SSLJAX_LEARN_SEED=N` runs every learning test at config seed N instead of the
  config's own, and `SSLJAX_LEARN_LOG=file.jsonl` appends each run's result (test, seed, kNN,
  margin) to that file, passed or not, and `SSLJAX_LEARN_OVERRIDES='optimizer.weight_decay=0.05;...'`
  sets config fields (values as Python literals) after the test's own changes, e.g.
    SSLJAX_LEARN_SEED=1 SSLJAX_LEARN_LOG=/tmp/seed1.jsonl pytest -m slow tests/test_byol.py
  """
  from ssljax import train
  from ssljax.evaluate.diagnostics import collapse_report
  from ssljax.metrics_writer import read_jsonl
  if os.environ.get("SSLJAX_LEARN_SEED"):
    config.seed = int(os.environ["SSLJAX_LEARN_SEED"])
  overrides = os.environ.get("SSLJAX_LEARN_OVERRIDES", "")
  for item in filter(None, overrides.split(";")):
    key, value = item.split("=", 1)
    *parents, leaf = key.strip().split(".")
    node = config
    for name in parents:
      node = node[name]
    if leaf not in node:
      raise KeyError(f"SSLJAX_LEARN_OVERRIDES: {key!r} is not a config field")
    node[leaf] = ast.literal_eval(value.strip())
  config.progress_bar = False
  config.eval.random_init = True
  trainer = train.Trainer(config, str(workdir))
  result = trainer.run()
  rows = read_jsonl(os.path.join(str(workdir), "metrics.jsonl"))
  losses = [r["loss"] for r in rows if "loss" in r]
  k = max(1, len(losses) // 10)
  first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
  emb = trainer.method.embeddings(trainer.state.params, trainer.state.method_state,
                                  trainer.evaluator.eval_x[:256])
  report = collapse_report(emb, threshold=0.2, centre=trainer.method.centre_embeddings)
  if os.environ.get("SSLJAX_LEARN_LOG"):
    with open(os.environ["SSLJAX_LEARN_LOG"], "a") as f:
      numbers = {key: v for key, v in result.items() if isinstance(v, (int, float))}
      f.write(json.dumps(dict(test=os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
                              seed=int(config.seed), margin=margin, overrides=overrides,
                              loss_first=first, loss_last=last,
                              collapsed=bool(report["collapsed"]), **numbers)) + "\n")
  if loss_falls:
    assert last < first, f"loss did not go down: first {first:.4f}, last {last:.4f}"
  assert result["knn_top1"] > result["knn_top1_random_init"] + margin, result
  assert not report["collapsed"], f"collapsed: {report}"
  return result


def random_mask_batch(n: int = 4, seed: int = 0) -> dict:
  """A one-crop batch of n random 16x16x1 images with the pipeline's 'random' masks on the 4x4
  patch grid (8 of 16 patches visible): what data2vec / I-JEPA (mask='random') steps get."""
  import numpy as np

  from ssljax.data import masks
  rng = np.random.default_rng(seed)
  ms = [masks.random_mask(rng, 16, 0.5) for _ in range(n)]
  return {"global": rng.normal(size=(n, 1, 16, 16, 1)).astype(np.float32),
          "mask": np.stack([m[0] for m in ms]), "keep_indices": np.stack([m[1] for m in ms]),
          "masked_indices": np.stack([m[2] for m in ms]), "label": np.zeros(n, np.int32)}


# Learning runs beyond CI's budget (further seeds, expected failures kept for their numbers): run
# with SSLJAX_LEARN_EXTRA=1 (`SSLJAX_LEARN_EXTRA=1 pytest -m slow tests/test_image_text_learning.py`).
EXTRA_RUN = pytest.mark.skipif(
    not os.environ.get("SSLJAX_LEARN_EXTRA"),
    reason="extra learning run, outside CI's time budget: SSLJAX_LEARN_EXTRA=1 runs it")
