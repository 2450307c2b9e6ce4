"""Plots: the run curves, the embedding maps, the covariance spectrum and ViT attention maps."""
import json
import os

import jax
import numpy as np
from PIL import Image

from ssljax import models, plots
from ssljax.evaluate import attention


def assert_png_with_content(path, min_size=(200, 150)):
  """A valid PNG of at least min_size whose pixels are not (nearly) all one colour."""
  assert os.path.exists(path), path
  with Image.open(path) as im:
    assert im.format == "PNG"
    im.verify()
  with Image.open(path) as im:
    rgb = np.asarray(im.convert("RGB"), np.float32)
  assert rgb.shape[1] >= min_size[0] and rgb.shape[0] >= min_size[1], rgb.shape
  assert rgb.std() > 5.0, f"{path} looks blank (pixel std {rgb.std():.2f})"
  # Not just a frame and a line: several colours and a real fraction of non-white pixels.
  assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20
  assert np.mean(rgb.min(axis=-1) < 200) > 0.02


def test_plot_run_keeps_loss_and_knn_curves(tmp_path):
  rows = [{"step": s, "loss": 5.0 - 0.1 * s, "lr": 1e-3 * min(1, s / 5)} for s in range(1, 21)]
  rows += [{"step": 0, "knn_top1_random_init": 0.5}, {"step": 10, "knn_top1": 0.6},
           {"step": 20, "knn_top1": 0.7}]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  written = plots.plot_run(str(tmp_path))
  assert [os.path.basename(p) for p in written] == ["loss.png", "knn.png"]
  for p in written:
    assert_png_with_content(p)
  assert plots.plot_run(str(tmp_path / "missing")) == []


def test_pca_and_spectrum_match_numpy():
  rng = np.random.default_rng(0)
  scales = np.array([5.0, 2.0, 0.5, 0.1])
  rot = np.linalg.qr(rng.normal(size=(4, 4)))[0]
  x = (rng.normal(size=(500, 4)) * scales) @ rot.T + 3.0
  ev = plots.covariance_spectrum(x)
  np.testing.assert_allclose(ev, np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1], rtol=1e-8)
  assert np.all(np.diff(ev) <= 0)
  p = plots.pca_2d(x)
  assert p.shape == (500, 2)
  # The two coordinates are uncorrelated and carry the two largest variances.
  np.testing.assert_allclose(np.var(p, axis=0, ddof=1), ev[:2], rtol=1e-8)
  assert abs(np.corrcoef(p.T)[0, 1]) < 1e-8


def test_plot_evaluation_writes_all_maps(tmp_path):
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 40)
  centers = rng.normal(size=(3, 8)) * 4
  feats = centers[labels] + rng.normal(size=(120, 8))
  emb = rng.normal(size=(120, 6)) * np.array([3, 1, 1, 0.1, 0.01, 0.001])
  images = rng.uniform(size=(2, 8, 8, 1))
  attn = rng.dirichlet(np.ones(4), size=(2, 2)).reshape(2, 2, 2, 2)
  written = plots.plot_evaluation(str(tmp_path), feats, labels, emb, images=images, attention=attn,
                                  step=7)
  names = [os.path.basename(p) for p in written]
  assert names == ["embedding_pca.png", "embedding_tsne.png", "spectrum.png", "attention.png"]
  for p in written:
    assert_png_with_content(p)
  t = plots.tsne_2d(feats)
  # t-SNE keeps the three well-separated clusters apart: every point's nearest neighbour
  # in the map has its class.
  d = np.linalg.norm(t[:, None] - t[None], axis=-1) + np.eye(len(t)) * 1e9
  assert np.mean(labels[np.argmin(d, axis=1)] == labels) > 0.95
  no_tsne = plots.plot_evaluation(str(tmp_path / "b"), feats, labels, emb, tsne=False)
  assert [os.path.basename(p) for p in no_tsne] == ["embedding_pca.png", "spectrum.png"]


def test_attention_weights_reproduce_the_attention_output():
  """The recomputed last-block weights, applied to the block's values and output projection,
  give exactly what the block's attention layer computed."""
  vit = models.ViT(patch_size=4, width=16, depth=2, num_heads=2, image_size=8, num_registers=1)
  images = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  variables = vit.init(jax.random.key(1), images)
  w = attention.last_block_weights(vit, variables, images)
  assert w.shape == (3, 2, 1 + 1 + 4, 1 + 1 + 4)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)

  def wanted(mdl, _):
    return tuple(mdl.scope.path[-2:]) in (("attn", "value"),) or tuple(mdl.scope.path[-1:]) == ("attn",)
  _, inter = vit.apply(variables, images, capture_intermediates=wanted, mutable=["intermediates"])
  blk = inter["intermediates"]["block1"]["attn"]
  v = blk["value"]["__call__"][0]                            # [N, L, H, Dh]
  out_p = variables["params"]["block1"]["attn"]["out"]
  mixed = np.einsum("nhqk,nkhd->nqhd", w, v)
  out = np.einsum("nqhd,hde->nqe", mixed, out_p["kernel"]) + out_p["bias"]
  np.testing.assert_allclose(out, blk["__call__"][0], rtol=2e-4, atol=2e-5)

  maps = attention.last_block_attention(vit, variables, images)
  assert maps.shape == (3, 2, 2, 2)
  np.testing.assert_allclose(maps.reshape(3, 2, 4), w[:, :, 0, 2:], rtol=1e-6)   # CLS row, patches


def test_attention_needs_a_vit():
  import pytest
  with pytest.raises(ValueError, match="ViT"):
    attention.last_block_weights(models.ResNet(depth=18), {}, np.zeros((1, 8, 8, 1)))
