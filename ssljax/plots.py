"""PNG plots of a run, drawn from its metrics.jsonl into workdir/plots/."""
from __future__ import annotations

import os

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
