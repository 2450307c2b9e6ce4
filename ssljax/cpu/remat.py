"""Per-block rematerialisation that XLA:CPU keeps (`model.remat` with policy 'full', on CPU only).

`jax.checkpoint` marks the backward pass's recomputation with an optimization barrier so that XLA
does not merge it with the forward computation (CSE) or schedule it early. XLA:CPU expands the
barriers before its CSE and scheduling passes: the recomputation is merged back into the forward
pass (or run right after it) and the activations stay alive, so a rematerialised ViT-B/16 step
compiles to the same temporary memory as without remat (benchmarks/remat_memory.py).

`remat(block_cls)` is the Flax-lifted alternative: a `jax.custom_vjp` whose forward keeps only the
block's inputs and whose backward recomputes the block from inputs tied to the incoming cotangent
(`x + 0 * ct[0]`, a float multiply XLA does not fold, as 0 * inf is nan). The recomputation then
cannot run before the cotangent exists nor be merged with the forward. Values and gradients are
the block's own (the tie adds an exact 0), except that a non-finite cotangent makes every
gradient of the block non-finite (the step is skipped then anyway).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import lift


def _tie(tree, cotangent):
  """Every floating leaf of `tree` plus an exact 0 that depends on `cotangent`'s first element."""
  leaves = [x for x in jax.tree_util.tree_leaves(cotangent)
            if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) and x.size]
  if not leaves:
    return tree
  zero = jnp.zeros((), jnp.float32) * leaves[0].reshape(-1)[0].astype(jnp.float32)

  def one(x):
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
      return x + zero.astype(x.dtype)
    return x
  return jax.tree_util.tree_map(one, tree)


def tied_checkpoint(fun):
  """`fun(*args)` (pure, no closed-over tracers) whose backward recomputes it from its inputs tied
  to the cotangent; the forward keeps only `args`."""
  @jax.custom_vjp
  def wrapped(*args):
    return fun(*args)

  def fwd(*args):
    return fun(*args), args

  def bwd(args, cotangent):
    _, vjp = jax.vjp(fun, *_tie(args, cotangent))
    return vjp(cotangent)

  wrapped.defvjp(fwd, bwd)
  return wrapped


def _lifted(fn, variables=True, rngs=True, static_argnums=()):
  """`flax.core.lift.checkpoint` with `tied_checkpoint` in place of `jax.checkpoint`."""
  def inner(scope_fn, repack_fn, variable_groups, rng_groups, *args, **kwargs):
    static = {i: args[i] for i in static_argnums}
    dynamic = [a for i, a in enumerate(args) if i not in static]

    def full(variable_groups, rng_groups, *dyn):
      it = iter(dyn)
      call = [static[i] if i in static else next(it) for i in range(len(args))]
      scope = scope_fn(variable_groups, rng_groups)
      y = fn(scope, *call, **kwargs)
      return y, repack_fn(scope)

    # Traced now, while the scopes are valid; the backward replays the pure function.
    pure, consts = jax.closure_convert(full, variable_groups, rng_groups, *dynamic)
    return tied_checkpoint(pure)(variable_groups, rng_groups, *dynamic, *consts)

  return lift.pack(inner, (variables,), (variables,), (rngs,), name="remat", enable_kwargs=True)


def remat(block_cls, static_argnums=(2,)):
  """`nn.remat(block_cls, static_argnums=...)` (policy 'full') that XLA:CPU does not undo.

  `static_argnums` counts `self`, as nn.remat's: (2,) makes the block's `train` argument static.
  """
  return nn.transforms.lift_transform(_lifted, block_cls,
                                      static_argnums=tuple(i - 1 for i in static_argnums))
