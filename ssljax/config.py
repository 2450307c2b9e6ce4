"""The config schema: defaults for every key, and validation that fails before any compile.

A config file (configs/*.py) defines `get_config()` that starts from `base_config(method, model)`
and changes what it needs. `validate(config)` compares the result against a fresh schema built
for the same method and backbone, so that an unknown key, a wrong type or an impossible value
stops the run with one line naming the key, the value and what was expected.
"""
from __future__ import annotations

import difflib
import os
from typing import Any

import ml_collections

from ssljax.data import augment
from ssljax.data import sources
from ssljax import grad_accum
from ssljax import methods as methods_lib
from ssljax import models as models_lib
from ssljax.errors import ConfigError  # noqa: F401  (re-exported)


DTYPES = ("float32", "bfloat16")
OPTIMIZERS = ("lars", "adamw", "sgd")
PARAM_SHARDINGS = ("replicated", "fsdp", "tp", "fsdp_tp")


def _data_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      source="digits",          # 'digits' | 'image_folder' | 'tfds' | 'synthetic'
      path="",                  # image_folder root (train/ and val/ inside) or TFDS data_dir
      tfds_name="",             # e.g. 'cifar10' for source='tfds'
      text_key="caption",       # source='tfds_captions': the caption feature ('captions/text')
      train_split="train",
      eval_split="val",         # 'val' for digits / image_folder; e.g. 'test' for TFDS cifar10
      image_size=16,            # side of the global crops fed to the backbone
      synthetic_size=32,        # synthetic source: stored image side
      synthetic_examples=1024,  # synthetic source: number of images
      on_bad_image="fail",      # image_folder: 'fail' on an unreadable file, or 'skip' it (reported)
      worker_count=0,           # grain worker processes (0 = in the main process)
      prefetch=2,               # batches prefetched by grain threads
      augment=augment.default_augment_config(),
      augment_on="auto",        # photometric augmentation: 'host' | 'device' (in the step) | 'auto'
      global_view_blur_prob=(),      # per global crop (cycled), e.g. BYOL (1.0, 0.1); () = augment's
      global_view_solarize_prob=(),  # per global crop (cycled), e.g. BYOL (0.0, 0.2); () = augment's
      local_view_blur_prob=-1.0,     # local crops (DINO 0.5); < 0 = augment.blur_prob
  ))


def _optimizer_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="adamw",             # 'lars' | 'adamw' | 'sgd'
      base_lr=1e-3,             # learning rate at global batch 256; scaled by batch_size / 256
      scale_lr_by_batch=True,
      weight_decay=1e-6,        # skipped for biases and normalisation parameters
      weight_decay_end=-1.0,    # >= 0: cosine schedule weight_decay -> this (DINO: 0.04 -> 0.4); < 0: constant
      momentum=0.9,             # lars / sgd
      b1=0.9,                   # adamw
      b2=0.999,                 # adamw
      trust_coefficient=1e-3,   # lars
      warmup_steps=10,
      end_lr_frac=0.0,          # final lr = peak * end_lr_frac (cosine decay)
      grad_clip=0.0,            # global-norm clipping, 0 = off
      layer_decay=1.0,          # ViT layer-wise lr decay (1.0 = off; 0.65-0.75 for fine-tuning)
      lr_scales="",             # 'module:factor,...': the lr of those top-level param modules times
                                # the factor, e.g. 'predictor:10' (BYOL's predictor at 10x)
  ))


def _eval_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      knn_k=20,
      knn_temperature=0.07,
      linear_epochs=100,
      batch_size=256,           # feature-extraction batch
      max_examples=10000,       # cap on the train-split bank used for kNN / linear probe
      random_init=True,         # also evaluate a random-init backbone once (knn_top1_random_init)
  ))


def _logging_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      wandb=False,              # also log to Weights & Biases (pip install wandb); off: never imported
      wandb_project="ssljax",
      wandb_name="",            # run name ('' = the workdir's name)
      wandb_entity="",          # team or user ('' = wandb's default)
      wandb_mode="",            # 'online' | 'offline' | 'disabled' ('' = WANDB_MODE or online)
  ))


def import_sibling(config_file: str, name: str = "common"):
  """The module `<name>.py` in the folder of `config_file`, loaded by path once per process.

  Config files are loaded by path (`--config configs/x.py`) or by shipped name (`--config x`,
  `ssljax.config_files`), not imported as a package, so they reach their shared recipe blocks
  this way, from any working directory and without touching sys.path:
  `common = config.import_sibling(__file__)` loads configs/common.py.
  """
  from ssljax import config_files  # pylint: disable=g-import-not-at-top
  return config_files.import_sibling(config_file, name)


def base_config(method: str = "simclr", model: str = "resnet") -> ml_collections.ConfigDict:
  """All keys with their defaults for `method` on backbone `model`."""
  c = ml_collections.ConfigDict()
  c.method = method
  c.seed = 0
  c.batch_size = 256            # global batch, over all devices and processes
  c.total_steps = 1000
  c.log_every = 10
  c.eval_every = 200
  c.checkpoint_every = 200
  c.keep_checkpoints = 2
  c.dtype = "float32"           # compute dtype; params, optimizer state and loss stay float32
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
  c.param_sharding = "replicated"  # 'replicated' | 'fsdp' | 'tp' | 'fsdp_tp' (ssljax/parallel.py PRESETS)
  c.progress_bar = True
  c.nonfinite = "skip"          # non-finite loss/grads: 'skip' the update (counted) or 'stop' the run
  c.max_skipped_steps = 20      # 'skip': stop once more steps than this were skipped
  c.restart_from_scratch = False  # a workdir with checkpoints: move its run to previous/, train from 0
  c.allow_config_change = False   # resume although keys outside resume.SAFE_KEYS changed
  c.grad_accum_steps = 1        # average grads of this many micro-batches per step (ssljax/grad_accum.py)
  c.eval_ema = False            # keep an EMA of the params in the train state; eval and export use it
  c.eval_ema_decay = 0.9998     # its decay (warmed up as min(decay, (1 + step) / (10 + step)))
  c.profile_steps = ()          # (first, last): jax.profiler trace of those steps into workdir/profile
  c.logging = _logging_config()
  c.model = models_lib.default_model_config(model)
  c.data = _data_config()
  c.optimizer = _optimizer_config()
  c.eval = _eval_config()
  c[method] = methods_lib.get(method).default_config()
  return c


def _suggest(key: str, choices) -> str:
  close = difflib.get_close_matches(key, list(choices), n=1)
  return f"; did you mean {close[0]!r}?" if close else ""


def _type_name(v: Any) -> str:
  return type(v).__name__


def _compatible(default: Any, value: Any) -> bool:
  if isinstance(default, bool) or isinstance(value, bool):
    return isinstance(default, bool) and isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float))
  if isinstance(default, int):
    return isinstance(value, int)
  if isinstance(default, (tuple, list)):
    return isinstance(value, (tuple, list))
  if default is None:
    return True
  return isinstance(value, type(default))


def _check_tree(config, schema, prefix: str) -> None:
  for key in config.keys():
    path = f"{prefix}{key}"
    if key not in schema:
      raise ConfigError(f"unknown config key {path!r}{_suggest(key, schema.keys())}")
    value, default = config[key], schema[key]
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise ConfigError(f"config.{path} must be a block (ConfigDict), got {value!r}")
      _check_tree(value, default, path + ".")
    elif not _compatible(default, value):
      raise ConfigError(f"config.{path}={value!r} has type {_type_name(value)}; "
                        f"expected {_type_name(default)} (like the default {default!r})")


def _choice(path: str, value: Any, choices) -> None:
  if value not in choices:
    raise ConfigError(f"config.{path}={value!r}; expected one of {tuple(choices)}")


def _positive(config, *keys: str) -> None:
  for key in keys:
    node = config
    for part in key.split("."):
      node = node[part]
    if node <= 0:
      raise ConfigError(f"config.{key}={node!r}; expected a positive number")


def validate(config: ml_collections.ConfigDict, device_count: int | None = None,
             process_count: int = 1) -> None:
  """Raises ConfigError (one line) for the first problem found; returns None when the config works.

  Checks, before anything is compiled: known method and backbone, every key known and of the right
  type, value ranges and choices, mesh sizes against `device_count`, batch size against the
  data-parallel size and the process count, and that an image folder exists and holds images.
  """
  if "method" not in config:
    raise ConfigError("config.method is missing; expected one of " + str(methods_lib.available()))
  _choice("method", config.method, methods_lib.available())
  if "model" not in config or "name" not in config.model:
    raise ConfigError("config.model.name is missing; expected one of " + str(models_lib.BACKBONES))
  _choice("model.name", config.model.name, models_lib.BACKBONES)
  _check_tree(config, base_config(config.method, config.model.name), "")

  _choice("dtype", config.dtype, DTYPES)
  _choice("data.source", config.data.source, sources.available())
  _choice("optimizer.name", config.optimizer.name, OPTIMIZERS)
  _choice("param_sharding", config.param_sharding, PARAM_SHARDINGS)
  _choice("nonfinite", config.nonfinite, ("skip", "stop"))
  _choice("data.on_bad_image", config.data.on_bad_image, ("fail", "skip"))
  _choice("data.augment_on", config.data.augment_on, ("auto", "host", "device"))
  for key in ("global_view_blur_prob", "global_view_solarize_prob"):
    bad = [p for p in config.data[key] if not 0.0 <= p <= 1.0]
    if bad:
      raise ConfigError(f"config.data.{key}={tuple(config.data[key])}; expected probabilities "
                        f"in [0, 1], one per global crop")
  if config.data.local_view_blur_prob > 1.0:
    raise ConfigError(f"config.data.local_view_blur_prob={config.data.local_view_blur_prob}; "
                      f"expected a probability in [0, 1] (or < 0 for augment.blur_prob)")
  _choice("model.cpu_tuning", config.model.get("cpu_tuning", "auto"), models_lib.CPU_TUNINGS)
  _choice("model.remat_policy", config.model.get("remat_policy", "full"), models_lib.REMAT_POLICIES)
  try:   # header only: a missing or unreadable model.init_from file ends the run here, one line
    from ssljax import interop  # pylint: disable=g-import-not-at-top
    interop.check_init_from(config.model)
  except (ValueError, OSError) as e:
    raise ConfigError(str(e)) from None
  from ssljax import optim  # pylint: disable=g-import-not-at-top
  optim.parse_lr_scales(config.optimizer.get("lr_scales", ""))   # one-line error on a bad spec
  if config.optimizer.weight_decay < 0:
    raise ConfigError(f"config.optimizer.weight_decay={config.optimizer.weight_decay}; expected >= 0")
  _positive(config, "batch_size", "total_steps", "log_every", "eval_every", "checkpoint_every",
            "keep_checkpoints", "data.image_size", "optimizer.base_lr", "eval.knn_k")

  if device_count is not None:
    from ssljax import parallel  # local: parallel imports jax device state
    shape = parallel.mesh_shape(config.mesh, device_count)
    dp = shape.get("data", 1) * shape.get("fsdp", 1)
    if config.batch_size % dp:
      raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by the data-parallel "
                        f"size {dp} (mesh data x fsdp = {shape}); expected a multiple of {dp}")
  grad_accum.check(config, dp if device_count is not None else 1)
  if not 0.0 <= config.eval_ema_decay < 1.0:
    raise ConfigError(f"config.eval_ema_decay={config.eval_ema_decay}; expected a decay in [0, 1)")
  _check_profile_steps(tuple(config.profile_steps))
  _choice("logging.wandb_mode", config.logging.wandb_mode, ("", "online", "offline", "disabled"))
  if config.batch_size % process_count:
    raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by the process count "
                      f"{process_count}")

  if config.data.source == "image_folder":
    _check_image_folder(config.data)
  if config.data.source == "array_record" and not os.path.isdir(config.data.path or ""):
    raise ConfigError(f"config.data.path={config.data.path!r} with data.source='array_record'; "
                      f"expected the folder written by `python -m ssljax.data.prepare --from "
                      f"image_folder SRC --to DIR`")
  if config.data.source == "tfds" and not config.data.tfds_name:
    raise ConfigError("config.data.tfds_name='' with data.source='tfds'; expected a TFDS name such as 'cifar10'")
  block = config[config.method] if config.method in config else {}
  if "loss_impl" in block:
    _choice(f"{config.method}.loss_impl", block.loss_impl, ("auto", "reference", "xla", "pallas"))
  methods_lib.get(config.method).validate_config(config)


def _check_profile_steps(steps: tuple) -> None:
  ok = steps == () or (len(steps) == 2 and all(isinstance(s, int) and not isinstance(s, bool)
                                               for s in steps) and 1 <= steps[0] <= steps[1])
  if not ok:
    raise ConfigError(f"config.profile_steps={steps!r}; expected () (off) or (first, last) with "
                      f"1 <= first <= last, e.g. --config.profile_steps=10,15")


def _check_image_folder(data) -> None:
  path = data.path
  if not path:
    raise ConfigError("config.data.path='' with data.source='image_folder'; expected a directory "
                      "with train/ and val/ sub-folders")
  if not os.path.isdir(path):
    raise ConfigError(f"config.data.path={path!r} does not exist or is not a directory")
  for split in (data.train_split, data.eval_split):
    split_dir = os.path.join(path, split)
    if not os.path.isdir(split_dir):
      raise ConfigError(f"config.data.path={path!r} has no {split!r} sub-folder; expected "
                        f"{split_dir}/<class>/<image files>")
    classes = [d for d in sorted(os.listdir(split_dir)) if os.path.isdir(os.path.join(split_dir, d))]
    if not classes:
      raise ConfigError(f"image folder {split_dir!r} is empty; expected one sub-folder per class")
    if not any(os.listdir(os.path.join(split_dir, c)) for c in classes):
      raise ConfigError(f"image folder {split_dir!r} has class folders but no image files")
