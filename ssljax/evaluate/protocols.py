"""The evaluation protocols of a pretrained run, their eval.json rows and the printed table.

Each protocol takes an opened `ssljax.evaluate.pretrained.PretrainedRun` and returns one row (a
flat JSON-serialisable dict: protocol, step, random_init, its settings and its numbers):

  knn          weighted cosine kNN (k, temperature)                            -> knn_top1
  linear       softmax probe on standardised frozen features (epochs, lr)      -> linear_top1
  fewshot      closed-form ridge, shots per class over seeds (shots, seeds)    -> {s}shot_top1_{mean,std}
  diagnostics  collapse report of the embedding, alignment of two augmented views, and plots
  finetune     end-to-end fine-tuning (`ssljax.evaluate.finetune.run_protocol`)
  segmentation linear probe on frozen ViT patch tokens, per-pixel, vs the random init -> miou
               (`ssljax.evaluate.segmentation`; data: the embedded digit canvases or a folder)
  zeroshot     image-text methods: nearest class prompt ensemble (`ssljax.evaluate.zeroshot`)
                                                                               -> zeroshot_top1
  retrieval    image-text methods: image->text and text->image recall      -> i2t_r1, ..., t2i_r10
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

from ssljax.evaluate.pretrained import PretrainedRun

PROTOCOLS = ("knn", "linear", "fewshot", "diagnostics", "finetune", "segmentation", "zeroshot",
             "retrieval")


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


def segmentation(run: PretrainedRun, data: str = "digits", epochs: int = 30, lr: float = 1e-2,
                 size: int | None = None, num_train: int = 1000, num_eval: int = 300) -> dict:
  """Linear segmentation probe on the frozen patch tokens (DINOv2's 'linear'), scored by mIoU on
  the held-out split, for the run's backbone and (unless the run is itself the random init) the
  random-init backbone of the same seed: `miou`, `miou_random_init`, `pixel_acc`, ...

  data: 'digits' (the embedded digit canvases, `ssljax.data.segmentation.digits_canvases`) or the
  path of a folder with train/ and val/, each holding images/ and masks/.
  """
  from ssljax.data import segmentation as seg_data
  from ssljax.evaluate import segmentation as seg
  from ssljax.evaluate.backbone import backbone_of
  seg.check_backbone(run.backbone().module)   # before any data is made
  seed = int(run.config.seed)
  train, held, name = seg.load_task(run.config, data, size, num_train, num_eval, seed=seed)
  channels = run.opened.input_shape()[-1]
  x_train, x_eval = (seg_data.to_model_input(s.images, run.config.data.augment, channels)
                     for s in (train, held))

  def score(captured):
    tokens = [seg.patch_tokens(captured.module, captured.variables, x) for x in (x_train, x_eval)]
    return seg.linear_probe(tokens[0], train.masks, tokens[1], held.masks, train.num_classes,
                            epochs=int(epochs), lr=float(lr), seed=seed)

  res = score(run.backbone())
  row = _row(run, "segmentation", seg_data=name, epochs=int(epochs), lr=float(lr),
             image_size=int(x_train.shape[1]), miou=res["miou"], pixel_acc=res["pixel_acc"],
             train_miou=res["train_miou"], iou_per_class=res["iou_per_class"],
             class_names=list(train.class_names))
  if not run.random_init:
    init = run.opened.built.init()
    base = score(backbone_of(run.method, init.eval_params, init.method_state))
    row.update(miou_random_init=base["miou"], pixel_acc_random_init=base["pixel_acc"])
  return row


class ProtocolError(ValueError):
  """A protocol that does not apply to this run (one line: what it needs)."""


def _image_text(run: PretrainedRun, protocol: str):
  """(held-out image embeddings, the evaluator's ZeroShot) of an image-text run, computed once."""
  ev = run.evaluator
  if ev.zeroshot is None:
    raise ProtocolError(f"--protocol {protocol} needs an image-text method (clip, siglip, lit); "
                     f"the run in {run.workdir} is {run.config.method!r}")
  emb = run._cached("image_text_embeddings", lambda: ev.eval_bank.features(  # pylint: disable=protected-access
      ev._encode_image, run.params, run.method_state, ev.sharding))  # pylint: disable=protected-access
  return emb, ev.zeroshot


def zeroshot(run: PretrainedRun) -> dict:
  """Zero-shot top-1 on the held-out split: the class whose prompt-ensemble text embedding is
  nearest (the source's class names and the method's or source's prompts)."""
  from ssljax.evaluate import zeroshot as zs_lib
  emb, zs = _image_text(run, "zeroshot")
  if not zs.class_names:
    raise ProtocolError(f"--protocol zeroshot needs class names; the {run.config.data.source!r} "
                     f"source has none (a classes.txt beside the captions names them)")
  classes = zs_lib.class_embeddings(lambda t: zs.embed_texts(run.params, run.method_state, t),
                                    zs.class_names, zs.prompts)
  return _row(run, "zeroshot", prompts=len(zs.prompts), classes=len(zs.class_names),
              zeroshot_top1=zs_lib.zero_shot_top1(emb, run.eval_y, classes))


def retrieval(run: PretrainedRun) -> dict:
  """Image->text and text->image recall at 1, 5, 10 over the held-out images and captions."""
  from ssljax.evaluate import zeroshot as zs_lib
  emb, zs = _image_text(run, "retrieval")
  texts = zs.embed_texts(run.params, run.method_state, zs.texts)
  return _row(run, "retrieval", pairs=len(zs.texts), **zs_lib.retrieval(emb, texts, zs.relevant))


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

_SETTINGS = ("k", "temperature", "epochs", "lr", "shots", "seeds", "l2_reg", "seg_data")
_IDENTITY = ("protocol", "step", "random_init") + _SETTINGS


def _row_identity(row: dict) -> str:
  return json.dumps({k: row.get(k) for k in _IDENTITY}, sort_keys=True)


def merge_eval_json(workdir: str, rows: Sequence[dict]) -> dict:
  """Adds `rows` to the `evaluations` list of workdir/eval.json (same identity -> replaced).

  A row's identity is its protocol, step, random_init flag and settings (k, temperature,
  epochs, shots, ...). Every other key of eval.json is kept; the file is replaced atomically
  (`ssljax.workdir.update_json`). Returns the file's new content.
  """
  from ssljax import workdir as workdir_lib
  new_ids = {_row_identity(r) for r in rows}

  def update(data):
    kept = [r for r in data.get("evaluations", []) if _row_identity(r) not in new_ids]
    return {**data, "evaluations": kept + list(rows)}

  return workdir_lib.update_json(os.path.join(workdir, "eval.json"), update)


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
