"""PNG plots of a run in workdir/plots/ (matplotlib, Agg backend).

- `plot_run(workdir)`: loss / learning rate and online kNN over steps, from metrics.jsonl
  (the trainer calls it at the end of a run).
- `plot_evaluation(workdir, ...)`: one checkpoint's held-out embeddings as 2-D maps (PCA,
  t-SNE), the eigen-spectrum of their covariance, and ViT attention maps (the evaluate CLI
  calls it with arrays it computed).
"""
from __future__ import annotations

import os

import numpy as np

from ssljax.metrics_writer import read_jsonl


def _series(rows, key):
  pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
  return [p[0] for p in pts], [p[1] for p in pts]


def plot_run(workdir: str) -> list[str]:
  """Writes plots/loss.png (loss and learning rate) and plots/knn.png; returns the paths written."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  rows = read_jsonl(path)
  out_dir = os.path.join(workdir, "plots")
  os.makedirs(out_dir, exist_ok=True)
  written = []

  steps, loss = _series(rows, "loss")
  if steps:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, loss, color="tab:blue", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    lr_steps, lr = _series(rows, "lr")
    if lr_steps:
      ax2 = ax.twinx()
      ax2.plot(lr_steps, lr, color="tab:orange", alpha=0.6, label="lr")
      ax2.set_ylabel("learning rate")
    ax.set_title("training loss")
    fig.tight_layout()
    written.append(os.path.join(out_dir, "loss.png"))
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

  steps, knn = _series(rows, "knn_top1")
  if steps:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, knn, marker="o", label="kNN top-1 (held-out)")
    _, base = _series(rows, "knn_top1_random_init")
    if base:
      ax.axhline(base[0], color="gray", linestyle="--", label="random-init backbone")
    ax.set_xlabel("step")
    ax.set_ylabel("kNN top-1")
    ax.legend()
    ax.set_title("online kNN accuracy")
    fig.tight_layout()
    written.append(os.path.join(out_dir, "knn.png"))
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
  return written


# ---------------------------------------------------------------------------------------------
# Plots of a checkpoint's held-out embeddings (written by `python -m ssljax.evaluate`).
# ---------------------------------------------------------------------------------------------


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def pca_2d(x) -> np.ndarray:
  """[N, D] -> [N, 2]: projections on the two leading principal components (sign-fixed)."""
  x = np.asarray(x, np.float64)
  x = x - x.mean(axis=0, keepdims=True)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  comps = vt[:2]
  if comps.shape[0] < 2:  # D == 1
    comps = np.concatenate([comps, np.zeros_like(comps)])
  signs = np.sign(comps[np.arange(2), np.argmax(np.abs(comps), axis=1)])
  return x @ (comps * signs[:, None]).T


def tsne_2d(x, seed: int = 0, max_points: int = 1000):
  """[N, D] -> [N', 2] t-SNE (scikit-learn) of the first N' = min(N, max_points) rows, or None
  when scikit-learn is not installed."""
  try:
    from sklearn.manifold import TSNE
  except ImportError:
    return None
  x = np.asarray(x, np.float32)[:max_points]
  perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
  return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
              max_iter=500).fit_transform(x)


def covariance_spectrum(z) -> np.ndarray:
  """Eigenvalues [min(N, D)] of the covariance of embeddings z [N, D], largest first."""
  z = np.asarray(z, np.float64)
  z = z - z.mean(axis=0, keepdims=True)
  s = np.linalg.svd(z, compute_uv=False)
  return s ** 2 / max(len(z) - 1, 1)


def plot_embedding_map(path: str, points, labels, title: str) -> str:
  """Scatter of points [N, 2] coloured by integer labels [N]; returns `path`."""
  plt = _pyplot()
  labels = np.asarray(labels)
  fig, ax = plt.subplots(figsize=(6, 5.5))
  classes = np.unique(labels)
  cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
  for i, c in enumerate(classes):
    sel = labels == c
    ax.scatter(points[sel, 0], points[sel, 1], s=10, color=cmap(i % cmap.N), label=str(c), alpha=0.8)
  if len(classes) <= 20:
    ax.legend(title="class", fontsize=7, markerscale=1.5, loc="best")
  ax.set_title(title)
  ax.set_xticks([])
  ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_spectrum(path: str, eigenvalues, title: str) -> str:
  """Log-scale eigenvalues (largest first) of an embedding covariance; returns `path`."""
  plt = _pyplot()
  ev = np.asarray(eigenvalues, np.float64)
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.semilogy(np.arange(1, len(ev) + 1), np.maximum(ev, 1e-12), marker=".")
  ax.set_xlabel("component (sorted)")
  ax.set_ylabel("eigenvalue of the covariance")
  ax.set_title(title)
  ax.grid(True, which="both", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_attention_maps(path: str, images, attention, title: str) -> str:
  """One row per image: the image, the head-mean map, then every head's map.

  Args:
    images: [N, H, W, C] (any range: each image is min-max scaled for display).
    attention: [N, heads, h, w] attention weights over the patch grid.
  """
  plt = _pyplot()
  images, attention = np.asarray(images, np.float32), np.asarray(attention, np.float32)
  n, heads = attention.shape[:2]
  cols = heads + 2
  fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n + 0.4), squeeze=False)
  for i in range(n):
    img = images[i]
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-8)
    panels = [(img[..., 0] if img.shape[-1] == 1 else img, "image", "gray")]
    panels.append((attention[i].mean(axis=0), "mean", "viridis"))
    panels += [(attention[i, h], f"head {h}", "viridis") for h in range(heads)]
    for j, (arr, name, cmap) in enumerate(panels):
      ax = axes[i, j]
      ax.imshow(arr, cmap=cmap, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(name, fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_evaluation(workdir: str, features, labels, embeddings, images=None, attention=None,
                    step: int | None = None, tsne: bool = True) -> list[str]:
  """Writes the plots of one checkpoint into workdir/plots/; returns the paths written.

  Args:
    features: [N, D] held-out backbone features; mapped to 2-D by PCA (embedding_pca.png)
      and, with `tsne` and scikit-learn installed, t-SNE (embedding_tsne.png, the first 1000
      rows), coloured by labels [N].
    embeddings: [N, E] held-out embeddings (what the loss sees): the eigen-spectrum of their
      covariance (spectrum.png); a collapsed embedding shows a few large eigenvalues and
      a cliff.
    images, attention: optional [n, H, W, C] images and their [n, heads, h, w] ViT attention
      maps (attention.png).
    step: the checkpoint step, for the titles.
  """
  out_dir = os.path.join(workdir, "plots")
  os.makedirs(out_dir, exist_ok=True)
  at = "" if step is None else f" (step {step})"
  written = [plot_embedding_map(os.path.join(out_dir, "embedding_pca.png"), pca_2d(features), labels,
                                f"held-out features, PCA{at}")]
  points = tsne_2d(features) if tsne else None
  if points is not None:
    written.append(plot_embedding_map(os.path.join(out_dir, "embedding_tsne.png"), points,
                                      labels[:len(points)],
                                      f"held-out features, t-SNE{at}"))
  written.append(plot_spectrum(os.path.join(out_dir, "spectrum.png"), covariance_spectrum(embeddings),
                               f"embedding covariance eigen-spectrum{at}"))
  if attention is not None:
    written.append(plot_attention_maps(os.path.join(out_dir, "attention.png"), images, attention,
                                       f"last-block attention of the pooled token{at}"))
  return written
