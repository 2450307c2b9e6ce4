"""The side-effect-free build of a run: train state, the pure jitted train step, mesh and shardings.

`build(config, devices, record)` validates the config and returns everything a run computes before
it touches a workdir or data (`Built`): mesh, method, view spec, optimizer, the global batch's
shapes, shardings, the jitted init and train step. The Trainer (ssljax/train.py) adds the
workdir, the data iterator, checkpoints, evaluation and the loop around it; `ssljax.plan`
compiles `Built.train_step` for a TPU slice; `workdir.open_run` restores a checkpoint into it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ssljax import checkpoint as ckpt_lib
from ssljax import config as config_lib
from ssljax import grad_accum
from ssljax import methods as methods_lib
from ssljax import optim
from ssljax import parallel
from ssljax.cpu import xla_flags
from ssljax.data import pipeline
from ssljax.data import views as views_lib


# ---------------------------------------------------------------------------------------------
# 1. TrainState and the pure train step.
# ---------------------------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (what a checkpoint holds)."""

  step: jax.Array          # int32 scalar: number of optimizer steps taken
  params: Any              # what the optimizer updates
  opt_state: Any
  method_state: Any        # BatchNorm statistics, EMA teacher, centers, queues, ...
  rng: jax.Array           # uint32 [2]: per-step keys are fold_in(rng, step)
  skipped: jax.Array       # int32 scalar: steps whose update was skipped (non-finite loss/grads)
  ema_params: Any = None   # config.eval_ema: EMA of `params` for evaluation and export, else None

  @property
  def eval_params(self) -> Any:
    """The params that evaluation and export use: the weights EMA when kept, else `params`."""
    return self.params if self.ema_params is None else self.ema_params


def ema_decay(decay: float, step: jax.Array) -> jax.Array:
  """The weights-EMA decay at optimizer step `step` (0-based): min(decay, (1 + step) / (10 + step)),
  the warm-up of TF's ExponentialMovingAverage(num_updates), so early averages are not dominated by
  the random init."""
  step = step.astype(jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + step) / (10.0 + step))


def make_train_step(method, tx: optax.GradientTransformation, lr_fn, prepare_batch=None,
                    grad_accum_steps: int = 1, eval_ema_decay: float | None = None):
  """`train_step(state, batch) -> (state, metrics)`, a pure function of its inputs.

  `prepare_batch` (jnp, batch -> batch) runs first: the view spec's device-side work
  (`Views.on_device`, e.g. photometric augmentation of uint8 crops). `grad_accum_steps` > 1
  averages the loss and gradients of that many micro-batches (`ssljax.grad_accum`) before the one
  optimizer step; `eval_ema_decay` updates `state.ema_params` after it (`ema_decay`).

  A step whose loss or gradients are not finite changes nothing but `step` and `skipped`
  (params, optimizer and method state keep their last good values) and reports `nonfinite=1`;
  the loop then applies `config.nonfinite` ('skip' or 'stop').

  On the CPU backend without ssljax's XLA:CPU flags (a script that did not call
  `ssljax.cpu.xla_flags.apply_cpu_defaults()` first) it warns once (`xla_flags.warn_if_missing`).
  """
  model = getattr(getattr(method, "config", None), "model", None)
  xla_flags.warn_if_missing(model.get("cpu_tuning", "auto") if model is not None else "auto")

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    rng = jax.random.fold_in(state.rng, state.step)
    if prepare_batch is not None:
      batch = prepare_batch(batch)

    def loss_fn(params, method_state, batch, rng):
      return method.loss(params, method_state, batch, rng, state.step)

    (loss, (metrics, method_state)), grads = grad_accum.value_and_grad(
        loss_fn, state.params, state.method_state, batch, rng, grad_accum_steps)
    grads = method.transform_grads(grads, method_state, state.step)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    method_state = method.after_step(params, method_state, state.step)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def keep_if_bad(new, old):
      return jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)

    metrics = dict(metrics, loss=loss.astype(jnp.float32), lr=lr_fn(state.step),
                   grad_norm=grad_norm, nonfinite=(~finite).astype(jnp.int32))
    new_state = state.replace(step=state.step + 1,
                              params=keep_if_bad(params, state.params),
                              opt_state=keep_if_bad(opt_state, state.opt_state),
                              method_state=keep_if_bad(method_state, state.method_state),
                              skipped=state.skipped + (~finite).astype(jnp.int32))
    if eval_ema_decay is not None:
      d = ema_decay(eval_ema_decay, state.step)
      ema = jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, state.ema_params, params)
      new_state = new_state.replace(ema_params=keep_if_bad(ema, state.ema_params))
    return new_state, metrics

  return train_step


# ---------------------------------------------------------------------------------------------
# 2. Set-up.
# ---------------------------------------------------------------------------------------------


def make_init_fn(method, tx, example, seed: int, prepare_batch=None, eval_ema: bool = False):
  """() -> a fresh TrainState for batches shaped like `example` (arrays or ShapeDtypeStructs).

  Parameters depend only on the shapes (the method is initialised on zeros) and on `seed`; jit it
  (with out_shardings to shard the state). The Trainer and the benchmarks start from this.
  `eval_ema` starts `ema_params` as a copy of the parameters.
  """
  def init():
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))
    batch = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), example)
    if prepare_batch is not None:
      batch = prepare_batch(batch)
    params, method_state = method.init(init_rng, batch)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      method_state=method_state, rng=train_rng, skipped=jnp.zeros((), jnp.int32),
                      ema_params=(jax.tree_util.tree_map(jnp.copy, params) if eval_ema else None))

  return init


@dataclasses.dataclass
class Built:
  """Everything a run computes before it touches a workdir or data: what `build` returns.

  `ssljax.plan` compiles `train_step` for a TPU slice from this alone; the Trainer adds the
  workdir, the data iterator, checkpoints and evaluation around it.
  """
  config: ml_collections.ConfigDict
  mesh: Any
  method: Any
  spec: Any                 # the method's view spec (ssljax.data.views.Views)
  tx: optax.GradientTransformation
  lr_fn: Any
  example: dict[str, jax.ShapeDtypeStruct]   # the global batch's shapes and dtypes
  batch_sharding: Any
  state_shardings: Any
  abstract_state: Any       # TrainState of ShapeDtypeStructs carrying their shardings
  init: Any                 # jitted () -> TrainState, sharded
  train_step: Any           # jitted (state, batch) -> (state, metrics), sharded, donates state

  def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch as ShapeDtypeStructs with the batch sharding (for `.trace` / `.lower`)."""
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=self.batch_sharding)
            for k, v in self.example.items()}


# Where `data.augment_on='auto'` runs the photometric augmentation, per platform: on the
# accelerator for GPU and TPU; on CPU the host: end to end on an idle 2-core machine the device
# placement was level with it at 32 px and 25% slower at 224 px, where the in-step blur costs
# more than the host's (BENCHMARKS.md "End to end vs lightly", benchmarks/end_to_end_peer.py).
AUTO_AUGMENT_ON = {"cpu": "host", "gpu": "device", "cuda": "device", "rocm": "device",
                   "tpu": "device"}


def augment_on(config: ml_collections.ConfigDict, devices: list[Any]) -> str:
  """'host' or 'device': config.data.augment_on, with 'auto' resolved for the devices' platform."""
  where = config.data.get("augment_on", "auto")
  if where != "auto":
    return where
  return AUTO_AUGMENT_ON.get(getattr(devices[0], "platform", "cpu"), "device")


def view_overrides(data: ml_collections.ConfigDict) -> tuple[tuple, tuple]:
  """(per-global-crop, local-crop) augmentation overrides from data.global_view_blur_prob /
  global_view_solarize_prob (one value per global crop, cycled) and data.local_view_blur_prob."""
  per_view = {"blur_prob": tuple(data.get("global_view_blur_prob", ())),
              "solarize_prob": tuple(data.get("global_view_solarize_prob", ()))}
  n = max(len(v) for v in per_view.values())
  views = tuple(tuple((k, float(v[i % len(v)])) for k, v in per_view.items() if v)
                for i in range(n))
  local = data.get("local_view_blur_prob", -1.0)
  return views, ((("blur_prob", float(local)),) if local >= 0 else ())


def view_spec(method, config: ml_collections.ConfigDict, devices: list[Any]):
  """`method`'s ViewSpec as a run of `config` on `devices` uses it: augmentation placed by
  data.augment_on, per-view overrides (data.global_view_*_prob, local_view_blur_prob) applied."""
  return (method.view_spec().with_augment_on(augment_on(config, devices))
          .with_view_overrides(*view_overrides(config.data)))


def prepare_batch_fn(spec, config: ml_collections.ConfigDict):
  """The train step's `prepare_batch`: `spec`'s device-side work (photometric augmentation where
  data.augment_on is 'device') in the config's compute dtype."""
  return functools.partial(spec.on_device, aug_cfg=config.data.augment,
                           dtype=jnp.dtype(config.dtype))


def build(config: ml_collections.ConfigDict, devices: list[Any], record: dict[str, Any],
          process_count: int = 1) -> Built:
  """Validates `config` and builds mesh, method, state shapes and the jitted steps; no side effects.

  Args:
    config: the run config.
    devices: the mesh's devices (real ones, or a TPU topology's abstract devices).
    record: one data record (e.g. the train source's first), from which the global batch shapes
      are derived through the method's view transform.
    process_count: processes (hosts) the devices belong to, for the batch-size checks.
  """
  config_lib.validate(config, device_count=len(devices), process_count=process_count)
  mesh = parallel.make_mesh(config.mesh, devices)
  method = methods_lib.get(config.method)(config)
  spec = view_spec(method, config, devices)
  prepare_batch = prepare_batch_fn(spec, config)
  tx, lr_fn = optim.build(config)
  views = pipeline.MakeViews(spec, config.data.augment)(record, np.random.default_rng(0))
  views_lib.check_example(spec.fields(), views, where=f"method {config.method!r}'s view spec")
  example = {k: jax.ShapeDtypeStruct((config.batch_size,) + np.shape(v), np.asarray(v).dtype)
             for k, v in views.items()}
  eval_ema = bool(config.get("eval_ema", False))
  init_fn = make_init_fn(method, tx, example, config.seed, prepare_batch, eval_ema)
  abstract = jax.eval_shape(init_fn)
  state_shardings = parallel.tree_shardings(abstract, mesh, config.param_sharding)
  batch_sharding = parallel.batch_sharding(mesh)
  # Traced under the mesh, so that every kernel in the step runs under shard_map over it.
  init = jax.jit(parallel.traced_under(init_fn, mesh), out_shardings=state_shardings)
  train_step = jax.jit(
      parallel.traced_under(make_train_step(
          method, tx, lr_fn, prepare_batch, config.get("grad_accum_steps", 1),
          config.eval_ema_decay if eval_ema else None), mesh),
      in_shardings=(state_shardings, batch_sharding),
      out_shardings=(state_shardings, parallel.replicated(mesh)),
      donate_argnums=(0,))
  return Built(config=config, mesh=mesh, method=method, spec=spec, tx=tx, lr_fn=lr_fn,
               example=example, batch_sharding=batch_sharding, state_shardings=state_shardings,
               abstract_state=ckpt_lib.abstract_like(abstract, state_shardings), init=init,
               train_step=train_step)
