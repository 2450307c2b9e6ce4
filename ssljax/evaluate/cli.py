"""Evaluate a pretrained workdir: `python -m ssljax.evaluate --workdir DIR --protocol knn`.

    python -m ssljax.evaluate --workdir workdirs/simclr_digits --protocol knn,linear,fewshot
    python -m ssljax.evaluate --workdir workdirs/simclr_digits --protocol diagnostics  # + plots
    python -m ssljax.evaluate --workdir workdirs/simclr_digits --protocol knn --random-init

The run's config is rebuilt from `DIR/config.json`, the latest (or `--step`) checkpoint is
restored, and the frozen features of the train bank and the held-out split (the same
deterministic centre views and `config.eval.max_examples` as the online evaluator) are computed
once per invocation and shared by every protocol asked for. Each protocol adds one row to the
`evaluations` list of `DIR/eval.json` (a row with the same protocol, step and settings is
replaced; every other key of the file is kept) and the rows are printed as a table.

Protocols:
  knn          weighted cosine kNN (--k, --temperature)                          -> knn_top1
  linear       softmax probe on standardised frozen features (--epochs, --lr)    -> linear_top1
  fewshot      closed-form ridge, shots per class over seeds (--shots, --seeds)  -> {s}shot_top1_{mean,std}
  diagnostics  collapse report of the embedding, alignment of two augmented views, and plots
  finetune     delegated to `ssljax.evaluate.finetune.run_protocol(run, **options)` when present
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

PROTOCOLS = ("knn", "linear", "fewshot", "diagnostics", "finetune")


# ---------------------------------------------------------------------------------------------
# Opening a workdir.
# ---------------------------------------------------------------------------------------------


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run wrote to `workdir/config.json`."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist; expected a workdir written by ssljax.train "
                            f"(it holds config.json, checkpoints/, metrics.jsonl)")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def _fit_mesh(config: ml_collections.ConfigDict, device_count: int) -> None:
  """Re-targets a mesh written for another device count to plain data parallelism."""
  from ssljax import parallel
  from ssljax.errors import ConfigError
  try:
    parallel.mesh_shape(config.mesh, device_count)
  except ConfigError:
    config.mesh = ml_collections.ConfigDict({name: (-1 if i == 0 else 1)
                                             for i, name in enumerate(config.mesh.keys())})


@contextlib.contextmanager
def _file_kept(path: str):
  """Restores `path`'s bytes on exit (the trainer rewrites config.json when it is built)."""
  with open(path, "rb") as f:
    original = f.read()
  try:
    yield
  finally:
    with open(path, "rb") as f:
      changed = f.read() != original
    if changed:
      with open(path, "wb") as f:
        f.write(original)


class PretrainedRun:
  """A pretrained workdir opened for evaluation: method, restored state, cached features.

  Attributes:
    workdir, config, method: the run, its config, its `ssljax.methods.base.Method`.
    state: the restored `ssljax.train.TrainState`.
    params, method_state: the restored (or, with random_init, freshly initialised) state.
    step: the checkpoint step (0 for random_init).
    random_init: whether the state is the untrained initialisation of the same seed.
    train_x, train_y, eval_x, eval_y: eval images [N, H, W, C] and int32 labels [N].
    num_classes: number of classes of the data source.
  """

  def __init__(self, workdir: str, step: int | None = None, random_init: bool = False,
               max_examples: int | None = None):
    from ssljax import train
    self.workdir = os.path.abspath(workdir)
    config = load_run_config(self.workdir)
    _fit_mesh(config, jax.device_count())
    config.progress_bar = False
    if max_examples is not None:
      config.eval.max_examples = int(max_examples)
    with _file_kept(os.path.join(self.workdir, "config.json")):
      self.trainer = train.Trainer(config, self.workdir)
    self.config, self.method = config, self.trainer.method
    self.random_init = bool(random_init)
    self.state, self.step = self._restore(step)
    state = self.state
    self.params, self.method_state = state.params, state.method_state
    ev = self.trainer.evaluator
    self.train_x, self.train_y, self.eval_x, self.eval_y = ev.train_x, ev.train_y, ev.eval_x, ev.eval_y
    self.num_classes = ev.num_classes
    self._cache: dict[str, Any] = {}

  def _restore(self, step):
    ckpt = self.trainer.checkpointer
    if self.random_init:
      if step not in (None, 0):
        raise ValueError(f"random_init=True with step={step}; a random init is step 0")
      return self.trainer._init(), 0
    steps = sorted(ckpt.all_steps())
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first, or evaluate the "
                              f"untrained backbone with --random-init")
    if step is None:
      step = steps[-1]
    if step not in steps:
      raise ValueError(f"--step {step}: no checkpoint at that step in {ckpt.directory}; "
                       f"available steps: {steps}")
    return ckpt.restore(step, self.trainer.abstract_state, self.trainer.data), int(step)

  def close(self) -> None:
    self.trainer.checkpointer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # Cached arrays. -------------------------------------------------------------------------

  def _cached(self, key, fn):
    if key not in self._cache:
      self._cache[key] = fn()
    return self._cache[key]

  def _extract(self, fn_name: str, images: np.ndarray) -> np.ndarray:
    from ssljax.evaluate import online
    ev = self.trainer.evaluator
    fn = ev._features if fn_name == "features" else ev._embeddings
    return online.extract(fn, self.params, self.method_state, images, ev.batch_size, ev.sharding)

  def features(self) -> tuple[np.ndarray, np.ndarray]:
    """(train [N, D], held-out [M, D]) frozen backbone features, computed once."""
    return self._cached("features", lambda: (self._extract("features", self.train_x),
                                             self._extract("features", self.eval_x)))

  def embeddings(self) -> np.ndarray:
    """[M, E] held-out embeddings (`method.embeddings`: what the loss sees), computed once."""
    return self._cached("embeddings", lambda: self._extract("embeddings", self.eval_x))

  def view_pair_embeddings(self, num: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings [num, E] of two random augmented views of the same held-out images."""
    def build():
      from ssljax.data import augment, sources
      cfg = self.config.data
      src = sources.build_source(cfg, cfg.eval_split)
      idx = np.linspace(0, len(src) - 1, min(num, len(src))).astype(np.int64)
      rng = np.random.default_rng(seed)
      views = [np.stack([augment.augment_view(src[int(i)]["image"], rng, cfg.image_size, cfg.augment)
                         for i in idx]) for _ in range(2)]
      return tuple(self._extract("embeddings", v.astype(np.float32)) for v in views)
    return self._cached(("pairs", num, seed), build)

  def backbone(self):
    """The method's `pretrained_backbone` as module, numpy variables and pooling
    (`ssljax.evaluate.backbone.CapturedBackbone`): what `features` runs."""
    from ssljax.evaluate.backbone import backbone_of
    return self._cached("backbone", lambda: backbone_of(self.method, self.params,
                                                        self.method_state))


# ---------------------------------------------------------------------------------------------
# Protocols: each returns one row (a flat JSON-serialisable dict).
# ---------------------------------------------------------------------------------------------


def _row(run: PretrainedRun, protocol: str, **values) -> dict[str, Any]:
  row = {"protocol": protocol, "step": run.step, "random_init": run.random_init}
  row.update(values)
  return row


def knn(run: PretrainedRun, k: int | None = None, temperature: float | None = None) -> dict:
  """Weighted cosine kNN of held-out features against the train bank."""
  from ssljax.evaluate.knn import knn_top1
  train_f, eval_f = run.features()
  k = int(run.config.eval.knn_k if k is None else k)
  t = float(run.config.eval.knn_temperature if temperature is None else temperature)
  acc = knn_top1(train_f, run.train_y, eval_f, run.eval_y, run.num_classes, k=min(k, len(train_f)),
                 temperature=t)
  return _row(run, "knn", k=k, temperature=t, knn_top1=acc)


def linear(run: PretrainedRun, epochs: int | None = None, lr: float = 0.1) -> dict:
  """Linear softmax probe on frozen (standardised) features."""
  from ssljax.evaluate.linear import linear_probe
  train_f, eval_f = run.features()
  epochs = int(run.config.eval.linear_epochs if epochs is None else epochs)
  res = linear_probe(train_f, run.train_y, eval_f, run.eval_y, run.num_classes, epochs=epochs,
                     lr=float(lr), seed=int(run.config.seed))
  return _row(run, "linear", epochs=epochs, lr=float(lr), linear_top1=res["top1"],
              linear_train_top1=res["train_top1"])


def fewshot(run: PretrainedRun, shots: Sequence[int] = (1, 5, 10, 25),
            seeds: Sequence[int] = (0, 1, 2), l2_reg: float = 2.0**10) -> dict:
  """Closed-form ridge on `shots` labelled examples per class; mean and spread over seeds."""
  from ssljax.evaluate.fewshot import fewshot_ridge
  train_f, eval_f = run.features()
  res = fewshot_ridge(train_f, run.train_y, eval_f, run.eval_y, run.num_classes,
                      shots=tuple(int(s) for s in shots), seeds=tuple(int(s) for s in seeds),
                      l2_reg=float(l2_reg))
  return _row(run, "fewshot", shots=[int(s) for s in shots], seeds=[int(s) for s in seeds],
              l2_reg=float(l2_reg), **res)


def diagnostics(run: PretrainedRun, plots: bool = True, tsne: bool = True) -> dict:
  """Collapse report of the held-out embeddings, feature RankMe, two-view alignment; plots."""
  from ssljax.evaluate.diagnostics import alignment, collapse_report, rankme
  report = collapse_report(run.embeddings())
  z1, z2 = run.view_pair_embeddings()
  row = _row(run, "diagnostics", **report, alignment=alignment(z1, z2),
             feature_rankme=rankme(run.features()[1]))
  if plots:
    row["plots"] = [os.path.relpath(p, run.workdir) for p in write_plots(run, tsne=tsne)]
  return row


def finetune(run: PretrainedRun, **options) -> dict:
  """End-to-end fine-tuning with layer-wise lr decay (`ssljax.evaluate.finetune.run_protocol`)."""
  from ssljax.evaluate import finetune as finetune_lib
  return _row(run, "finetune", **finetune_lib.run_protocol(run, **options))


def write_plots(run: PretrainedRun, tsne: bool = True) -> list[str]:
  """Embedding maps, the covariance spectrum and (ViT) attention maps into workdir/plots/."""
  from ssljax import models, plots
  from ssljax.evaluate.attention import last_block_attention
  _, eval_f = run.features()
  attention = images = None
  captured = run.backbone()
  vit = captured.module
  if isinstance(vit, models.ViT):
    images = run.eval_x[:6]
    attention = last_block_attention(vit, captured.variables, images)
  return plots.plot_evaluation(run.workdir, eval_f, run.eval_y, run.embeddings(),
                               images=images, attention=attention, step=run.step, tsne=tsne)


# ---------------------------------------------------------------------------------------------
# eval.json and the table.
# ---------------------------------------------------------------------------------------------

_SETTINGS = ("k", "temperature", "epochs", "lr", "shots", "seeds", "l2_reg")
_IDENTITY = ("protocol", "step", "random_init") + _SETTINGS


def _row_identity(row: dict) -> str:
  return json.dumps({k: row.get(k) for k in _IDENTITY}, sort_keys=True)


def merge_eval_json(workdir: str, rows: Sequence[dict]) -> dict:
  """Adds `rows` to the `evaluations` list of workdir/eval.json (same identity -> replaced).

  A row's identity is its protocol, step, random_init flag and settings (k, temperature,
  epochs, shots, ...). Every other key of eval.json is kept. Returns the file's new content.
  """
  path = os.path.join(workdir, "eval.json")
  data = {}
  if os.path.exists(path):
    with open(path) as f:
      data = json.load(f)
  existing = list(data.get("evaluations", []))
  new_ids = {_row_identity(r) for r in rows}
  data["evaluations"] = [r for r in existing if _row_identity(r) not in new_ids] + list(rows)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=2)
  os.replace(tmp, path)
  return data


def format_table(rows: Sequence[dict]) -> str:
  """One line per metric: protocol (settings) | step | metric | value."""
  lines = []
  for r in rows:
    settings = ", ".join(f"{k}={r[k]}" for k in _SETTINGS if k in r and k != "l2_reg")
    name = r["protocol"] + (" (random init)" if r.get("random_init") else "")
    name += f" [{settings}]" if settings else ""
    for key, value in r.items():
      if key in _IDENTITY:
        continue
      if isinstance(value, bool):
        text = str(value)
      elif isinstance(value, float):
        text = f"{value:.4f}"
      elif isinstance(value, int):
        text = str(value)
      else:
        continue
      lines.append((name, str(r["step"]), key, text))
  if not lines:
    return ""
  head = ("protocol", "step", "metric", "value")
  widths = [max(len(x[i]) for x in lines + [head]) for i in range(4)]
  fmt = "  ".join(f"{{:<{w}}}" for w in widths)
  out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
  out += [fmt.format(*x) for x in lines]
  return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# The command line.
# ---------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
  try:
    return [int(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None


def _protocols(text: str) -> list[str]:
  names = [p.strip() for p in text.split(",") if p.strip()]
  if names == ["all"]:
    return ["knn", "linear", "fewshot", "diagnostics"]
  bad = [p for p in names if p not in PROTOCOLS]
  if bad or not names:
    raise argparse.ArgumentTypeError(f"protocol {bad[0] if bad else text!r}; expected one of "
                                     f"{PROTOCOLS} (comma-separated) or 'all'")
  return names


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m ssljax.evaluate", description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="a pretraining workdir (holds config.json)")
  p.add_argument("--protocol", type=_protocols, default=["knn"],
                 help=f"comma-separated subset of {PROTOCOLS}, or 'all' (default: knn)")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
  p.add_argument("--random-init", action="store_true",
                 help="evaluate the untrained backbone of the same seed instead of a checkpoint")
  p.add_argument("--max-examples", type=int, default=None,
                 help="cap on train-bank / held-out examples (default: config.eval.max_examples)")
  p.add_argument("--k", type=int, default=None, help="kNN neighbours (default: config.eval.knn_k)")
  p.add_argument("--temperature", type=float, default=None,
                 help="kNN vote temperature (default: config.eval.knn_temperature)")
  p.add_argument("--epochs", type=int, default=None,
                 help="linear-probe epochs (default: config.eval.linear_epochs)")
  p.add_argument("--lr", type=float, default=0.1, help="linear-probe peak learning rate")
  p.add_argument("--shots", type=_int_list, default=[1, 5, 10, 25], help="few-shot: shots per class")
  p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="few-shot: one draw per seed")
  p.add_argument("--l2-reg", type=float, default=2.0**10, help="few-shot ridge penalty")
  p.add_argument("--plots", action="store_true",
                 help="also write the embedding / spectrum / attention plots (diagnostics always does)")
  p.add_argument("--no-tsne", action="store_true", help="plots: skip the (slower) t-SNE map")
  p.add_argument("--no-write", action="store_true", help="print only; leave eval.json as it is")
  return p


def evaluate(run: PretrainedRun, protocols: Sequence[str], args: argparse.Namespace) -> list[dict]:
  """Runs `protocols` on `run` with the options of `args`; returns their rows."""
  calls = {
      "knn": lambda: knn(run, k=args.k, temperature=args.temperature),
      "linear": lambda: linear(run, epochs=args.epochs, lr=args.lr),
      "fewshot": lambda: fewshot(run, shots=args.shots, seeds=args.seeds, l2_reg=args.l2_reg),
      "diagnostics": lambda: diagnostics(run, plots=True, tsne=not args.no_tsne),
      "finetune": lambda: finetune(run),
  }
  rows = []
  for name in protocols:
    t0 = time.perf_counter()
    row = calls[name]()
    row["time_s"] = round(time.perf_counter() - t0, 3)
    rows.append(row)
  if args.plots and "diagnostics" not in protocols:
    rows[-1]["plots"] = [os.path.relpath(p, run.workdir)
                         for p in write_plots(run, tsne=not args.no_tsne)]
  return rows


def main(argv: Sequence[str] | None = None) -> list[dict]:
  """The CLI; returns the rows it wrote (for notebooks and tests)."""
  args = build_parser().parse_args(argv)
  try:
    run = PretrainedRun(args.workdir, step=args.step, random_init=args.random_init,
                        max_examples=args.max_examples)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f"error: {e}") from None
  with run:
    rows = evaluate(run, args.protocol, args)
  if not args.no_write and jax.process_index() == 0:
    merge_eval_json(run.workdir, rows)
  print(format_table(rows))
  for r in rows:
    for p in r.get("plots", []):
      print(f"wrote {os.path.join(run.workdir, p)}")
  sys.stdout.flush()
  return rows
