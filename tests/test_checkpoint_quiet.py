"""A damaged checkpoint is reported once, in one line: orbax's echoes of the failed read are dropped.

Restoring a truncated step used to print dozens of bare "RuntimeError: Event loop is closed"
tracebacks (tensorstore completing reads into the asyncio loop orbax had closed) and asyncio's
"... exception was never retrieved" records, by timing: 78, 216 and 96 tracebacks in three runs
restoring three damaged steps of 40 arrays before the filters, none in eight after. The script
below damages six steps of 60 arrays so that, without the filters, some echo is all but certain
(it failed 5 runs of 5 then; with four steps of 40 arrays, 3 of 4).
"""
import asyncio
import logging
import os
import subprocess
import sys
import textwrap

from ssljax import checkpoint as ckpt_lib

_SCRIPT = textwrap.dedent("""
    import gc, os, sys, time
    import jax, jax.numpy as jnp
    from ssljax.checkpoint import Checkpointer, DamagedCheckpointError, abstract_like
    from tests.test_soak import _truncate_newest
    workdir = sys.argv[1]
    directory = os.path.join(workdir, "checkpoints")
    state = {f"w{i}": jnp.full((64, 64), float(i)) for i in range(60)}
    ckpt = Checkpointer(directory, keep=8)
    here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = abstract_like(state, jax.tree.map(lambda _: here, state))
    for step in range(1, 7):
      ckpt.save(step, state)
      ckpt.wait()
      assert _truncate_newest(workdir) == step
      try:
        ckpt.restore(step, target)
      except DamagedCheckpointError as e:
        print(f"damaged step {step}: {str(e)[:60]}", flush=True)
      gc.collect()
      time.sleep(0.3)   # reads still in flight complete here
    ckpt.close()
    print("done", flush=True)
""")


def test_a_damaged_restore_prints_no_orbax_echoes(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)],
                        capture_output=True, text=True, timeout=300, env=env,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = proc.stdout + proc.stderr
  assert proc.returncode == 0, out[-3000:]
  assert [f"damaged step {s}" in out for s in range(1, 7)] == [True] * 6, out[-3000:]
  assert "Event loop is closed" not in out, out[-3000:]
  assert "never retrieved" not in out, out[-3000:]
  assert len(os.listdir(tmp_path / "checkpoints_damaged")) == 6


def _closed_loop_error():
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as e:
    return e
  raise AssertionError("a closed loop accepted a callback")


def test_only_the_closed_loop_echo_is_taken_for_one():
  echo = _closed_loop_error()
  assert ckpt_lib._is_closed_loop_echo(echo, echo.__traceback__)
  try:
    raise RuntimeError("Event loop is closed")   # same words, raised here: not asyncio's
  except RuntimeError as e:
    assert not ckpt_lib._is_closed_loop_echo(e, e.__traceback__)
  other = RuntimeError("something else")
  assert not ckpt_lib._is_closed_loop_echo(other, echo.__traceback__)


def test_never_retrieved_records_are_dropped_only_for_damage_after_a_failed_read(monkeypatch):
  def record(error):
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1,
                             "Task exception was never retrieved\nfuture: <Task ...>", None,
                             (type(error), error, None))
  damage = ValueError("DATA_LOSS: Error reading w0/.zarray")
  monkeypatch.setattr(ckpt_lib, "_READ_FAILED", False)
  assert ckpt_lib._drop_orbax_sibling_failures(record(damage))        # no failed read yet: kept
  monkeypatch.setattr(ckpt_lib, "_READ_FAILED", True)
  assert not ckpt_lib._drop_orbax_sibling_failures(record(damage))    # an echo of it: dropped
  assert ckpt_lib._drop_orbax_sibling_failures(record(MemoryError("out of memory")))   # kept
  other = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Executing <Task> took 1 s",
                            None, (ValueError, damage, None))
  assert ckpt_lib._drop_orbax_sibling_failures(other)
