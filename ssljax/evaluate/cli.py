"""Evaluate a pretrained workdir: `python -m ssljax.evaluate --workdir DIR --protocol knn`.

    python -m ssljax.evaluate --workdir workdirs/simclr_digits --protocol knn,linear,fewshot
    python -m ssljax.evaluate --workdir workdirs/simclr_digits --protocol diagnostics  # + plots
    python -m ssljax.evaluate --workdir workdirs/simclr_digits --protocol knn --random-init
    python -m ssljax.evaluate --workdir workdirs/simclr_digits --protocol segmentation  # mIoU
    python -m ssljax.evaluate --workdir workdirs/siglip_digits --protocol zeroshot,retrieval

The run is opened from `DIR/config.json` and the latest (or `--step`) checkpoint
(`ssljax.workdir.open_run`), and the frozen features of the train bank and the held-out split (the
same deterministic centre views and `config.eval.max_examples` as the online evaluator) are
computed once per invocation and shared by every protocol asked for. Each protocol adds one row to
the `evaluations` list of `DIR/eval.json` (a row with the same protocol, step and settings is
replaced; every other key of the file is kept) and the rows are printed as a table.

Protocols (ssljax/evaluate/protocols.py): knn, linear, fewshot, diagnostics, finetune,
segmentation, and for image-text runs zeroshot and retrieval; 'all' is the first four. From Python: `rows = cli.main(["--workdir", DIR, "--protocol", "knn"])`, or
`cli.evaluate(PretrainedRun(DIR), ["knn"], cli.Options(k=10))`.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Sequence

from absl import flags

from ssljax import commandline
# The protocols and the opened run, re-exported: `cli.PretrainedRun`, `cli.knn`, ...
from ssljax.evaluate.pretrained import PretrainedRun  # noqa: F401
from ssljax.evaluate.protocols import (PROTOCOLS, diagnostics, fewshot, finetune,  # noqa: F401
                                       format_table, knn, linear, merge_eval_json, retrieval,
                                       segmentation, write_plots, zeroshot)

PROG = "ssljax.evaluate"


@dataclasses.dataclass
class Options:
  """The protocols' settings (None: the run config's value, see the flags)."""
  k: int | None = None
  temperature: float | None = None
  epochs: int | None = None
  lr: float = 0.1
  shots: Sequence[int] = (1, 5, 10, 25)
  seeds: Sequence[int] = (0, 1, 2)
  l2_reg: float = 2.0**10
  plots: bool = False
  tsne: bool = True
  seg_data: str = "digits"
  seg_size: int | None = None
  seg_epochs: int = 30
  seg_lr: float = 1e-2


def _protocols(names: Sequence[str]) -> list[str]:
  names = [p.strip() for p in names if p.strip()]
  if names == ["all"]:
    return ["knn", "linear", "fewshot", "diagnostics"]
  bad = [p for p in names if p not in PROTOCOLS]
  if bad or not names:
    raise ValueError(f"--protocol {bad[0] if bad else ''!r}; expected one of {PROTOCOLS} "
                     f"(comma-separated) or 'all'")
  return names


def define_flags(flag_values: flags.FlagValues) -> None:
  fv = flag_values
  flags.DEFINE_string("workdir", None, "A pretraining workdir (holds config.json).", flag_values=fv)
  flags.DEFINE_list("protocol", ["knn"], f"Comma-separated subset of {PROTOCOLS}, or 'all'.",
                    flag_values=fv)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", flag_values=fv)
  flags.DEFINE_bool("random-init", False, "Evaluate the untrained backbone of the same seed "
                    "instead of a checkpoint.", flag_values=fv)
  flags.DEFINE_integer("max-examples", None, "Cap on train-bank / held-out examples (default: "
                       "config.eval.max_examples).", flag_values=fv)
  flags.DEFINE_integer("k", None, "kNN neighbours (default: config.eval.knn_k).", flag_values=fv)
  flags.DEFINE_float("temperature", None, "kNN vote temperature (default: "
                     "config.eval.knn_temperature).", flag_values=fv)
  flags.DEFINE_integer("epochs", None, "Linear-probe epochs (default: config.eval.linear_epochs).",
                       flag_values=fv)
  flags.DEFINE_float("lr", 0.1, "Linear-probe peak learning rate.", flag_values=fv)
  flags.DEFINE_list("shots", ["1", "5", "10", "25"], "Few-shot: shots per class.", flag_values=fv)
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Few-shot: one draw per seed.", flag_values=fv)
  flags.DEFINE_float("l2-reg", 2.0**10, "Few-shot ridge penalty.", flag_values=fv)
  flags.DEFINE_bool("plots", False, "Also write the embedding / spectrum / attention plots "
                    "(diagnostics always does).", flag_values=fv)
  flags.DEFINE_bool("no-tsne", False, "Plots: skip the (slower) t-SNE map.", flag_values=fv)
  flags.DEFINE_bool("no-write", False, "Print only; leave eval.json as it is.", flag_values=fv)
  flags.DEFINE_string("seg-data", "digits", "Segmentation: 'digits' (embedded digit canvases) or "
                      "a folder DIR/{train,val}/{images,masks}/.", flag_values=fv)
  flags.DEFINE_integer("seg-size", None, "Segmentation: image side (default data.image_size; for "
                       "digits a multiple of it puts several digits on each canvas).",
                       flag_values=fv)
  flags.DEFINE_integer("seg-epochs", 30, "Segmentation: linear-head epochs.", flag_values=fv)
  flags.DEFINE_float("seg-lr", 1e-2, "Segmentation: linear-head peak learning rate (AdamW).",
                     flag_values=fv)


def _ints(name: str, values: Sequence[str]) -> list[int]:
  try:
    return [int(v) for v in values if v.strip()]
  except ValueError:
    raise ValueError(f"--{name}={','.join(values)}: expected comma-separated integers") from None


def options_from_flags(fv: flags.FlagValues) -> Options:
  """The `Options` of parsed flags (ValueError, one line, for a bad list)."""
  return Options(k=fv.k, temperature=fv.temperature, epochs=fv.epochs, lr=fv.lr,
                 shots=_ints("shots", fv.shots), seeds=_ints("seeds", fv.seeds),
                 l2_reg=fv["l2-reg"].value, plots=fv.plots, tsne=not fv["no-tsne"].value,
                 seg_data=fv["seg-data"].value, seg_size=fv["seg-size"].value,
                 seg_epochs=fv["seg-epochs"].value, seg_lr=fv["seg-lr"].value)


def evaluate(run: PretrainedRun, protocols: Sequence[str], options: Options | None = None
             ) -> list[dict]:
  """Runs `protocols` on `run` with `options`; returns their rows (each with its time_s)."""
  o = options or Options()
  calls = {
      "knn": lambda: knn(run, k=o.k, temperature=o.temperature),
      "linear": lambda: linear(run, epochs=o.epochs, lr=o.lr),
      "fewshot": lambda: fewshot(run, shots=o.shots, seeds=o.seeds, l2_reg=o.l2_reg),
      "diagnostics": lambda: diagnostics(run, plots=True, tsne=o.tsne),
      "finetune": lambda: finetune(run),
      "segmentation": lambda: segmentation(run, data=o.seg_data, epochs=o.seg_epochs,
                                           lr=o.seg_lr, size=o.seg_size),
      "zeroshot": lambda: zeroshot(run),
      "retrieval": lambda: retrieval(run),
  }
  rows, protocols = [], _protocols(protocols)
  for name in protocols:
    t0 = time.perf_counter()
    row = calls[name]()
    row["time_s"] = round(time.perf_counter() - t0, 3)
    rows.append(row)
  if o.plots and "diagnostics" not in protocols:
    rows[-1]["plots"] = [os.path.relpath(p, run.workdir) for p in write_plots(run, tsne=o.tsne)]
  return rows


def _main(fv: flags.FlagValues) -> list[dict]:
  """The command on parsed flags; SystemExit with one line for a bad input."""
  import jax
  if not fv.workdir:
    raise SystemExit(f"{PROG}: error: --workdir is required, e.g. python -m ssljax.evaluate "
                     f"--workdir workdirs/simclr_digits --protocol knn")
  try:
    protocols = _protocols(fv.protocol)
    options = options_from_flags(fv)
    run = PretrainedRun(fv.workdir, step=fv.step, random_init=fv["random-init"].value,
                        max_examples=fv["max-examples"].value)
  except (FileNotFoundError, ValueError) as e:   # ConfigError, IncompatibleCheckpointError too
    raise SystemExit(f"{PROG}: error: {commandline.one_line(e)}") from None
  from ssljax.evaluate.protocols import ProtocolError
  from ssljax.evaluate.segmentation import SegmentationError
  with run:
    try:
      rows = evaluate(run, protocols, options)
    except (SegmentationError, ProtocolError) as e:
      raise SystemExit(f"{PROG}: error: {commandline.one_line(e)}") from None
  if not fv["no-write"].value and jax.process_index() == 0:
    merge_eval_json(run.workdir, rows)
  print(format_table(rows))
  for r in rows:
    for p in r.get("plots", []):
      print(f"wrote {os.path.join(run.workdir, p)}")
  sys.stdout.flush()
  return rows


def main(argv: Sequence[str] | None = None) -> list[dict]:
  """The CLI from Python: `argv` without the program name (default sys.argv[1:]); returns the
  rows it wrote (for notebooks and tests). A bad flag or input raises SystemExit (one line)."""
  return _main(commandline.parse(PROG, define_flags, sys.argv[1:] if argv is None else argv))


def _command(fv: flags.FlagValues, _) -> int:
  commandline.quiet_logging(fv)
  _main(fv)
  return 0


def run() -> None:
  """`python -m ssljax.evaluate`."""
  commandline.run(PROG, define_flags, _command)
