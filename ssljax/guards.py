"""The training loop's guard rails: the non-finite policy, loss-spike and collapse warnings, and
stopping cleanly on SIGTERM / SIGUSR1 / SIGINT (all processes save the same step, then exit 0)."""
from __future__ import annotations

import signal

import numpy as np


class Guard:
  """Guard rails: the non-finite policy, loss-spike and collapse warnings.

  config.nonfinite = 'skip': a step with a non-finite loss or gradient leaves the state as it was
  (the train step does that) and is counted; more than config.max_skipped_steps of them stop the
  run. 'stop': the first one stops the run, after saving the last good parameters.
  """

  def __init__(self, config, enabled: bool):
    self.policy, self.max_skipped = config.nonfinite, config.max_skipped_steps
    self.enabled, self._loss_avg = enabled, None

  def check_step(self, step: int, metrics, state) -> str:
    """'' to go on, else the reason to stop (a host sync per step only under the 'stop' policy)."""
    if self.policy == "stop":
      if int(metrics["nonfinite"]):
        return (f"non-finite loss or gradient at step {step} (loss={float(metrics['loss'])}, "
                f"grad_norm={float(metrics['grad_norm'])}); stopped with the last good parameters "
                f"saved (config.nonfinite='stop')")
    return ""

  def check_log(self, step: int, metrics, bar) -> None:
    if self.policy == "skip" and int(metrics.get("nonfinite", 0)):
      self._warn(bar, f"step {step}: non-finite loss or gradient; update skipped")
    loss = float(metrics["loss"])
    if self._loss_avg is not None and np.isfinite(loss) and loss > 2.0 * abs(self._loss_avg) + 1.0:
      self._warn(bar, f"step {step}: loss spike {loss:.4f} (recent average {self._loss_avg:.4f})")
    if np.isfinite(loss):
      self._loss_avg = loss if self._loss_avg is None else 0.9 * self._loss_avg + 0.1 * loss

  def check_eval(self, step: int, row, bar) -> None:
    if row.get("collapsed"):
      self._warn(bar, f"step {step}: the embedding looks collapsed (per-dim std "
                      f"{row['embedding_std']:.2e}, rankme {row['rankme']:.2f})")

  def check_skipped(self, step: int, skipped: int) -> str:
    if self.policy == "skip" and skipped > self.max_skipped:
      return (f"{skipped} steps with non-finite loss or gradient by step {step}, more than "
              f"config.max_skipped_steps={self.max_skipped}; stopped with the last good parameters saved")
    return ""

  def _warn(self, bar, message: str) -> None:
    if self.enabled:
      bar.write("warning: " + message)


class StopOnSignal:
  """Turns SIGTERM / SIGUSR1 / SIGINT into a stop at a step boundary all processes agree on.

  SIGTERM is what a scheduler or a TPU maintenance event sends before it kills a job; SIGUSR1 is
  what SLURM sends with `--signal=USR1@120`. One process receiving it is enough:
  `should_stop(step)`, called by every process at every step boundary, is True at the same step on
  all of them, and they all save that step. With one process it is the local flag, read at once. With several,
  each boundary dispatches a tiny max-reduction of the processes' flags over all devices
  (asynchronous, like the train step), and reads the one dispatched `lag` boundaries earlier: all
  processes read the same value at the same step, without waiting for the current step.
  A second signal stops at once (KeyboardInterrupt).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

  def __init__(self, lag: int = 1):
    self.stop, self.signal_name, self._previous = False, "", {}
    self.lag, self._pending, self._reduce = lag, [], None
    for sig in self.SIGNALS:
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass

  def _handle(self, signum, frame):
    del frame
    if self.stop:  # a second signal: stop now
      raise KeyboardInterrupt
    self.stop, self.signal_name = True, signal.Signals(signum).name

  def should_stop(self, step: int) -> bool:
    """Whether to save and stop after `step`; every process must call this at every step."""
    del step  # the boundaries are counted, not named: all processes call in the same order
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_count() == 1:
      return self.stop
    if self._reduce is None:
      self._reduce = _flag_reduction()
    self._pending.append(self._reduce(self.stop))
    if len(self._pending) <= self.lag:
      return False
    return bool(int(self._pending.pop(0)))

  def reason(self, step: int) -> str:
    who = (f"received {self.signal_name}" if self.stop else
           "another process received a stop signal (SIGTERM / SIGUSR1 / SIGINT)")
    import jax  # pylint: disable=g-import-not-at-top
    where = f"all {jax.process_count()} processes saved" if jax.process_count() > 1 else "saved"
    return f"{who}: {where} step {step}; run the same command to resume"

  def restore(self):
    for sig, handler in self._previous.items():
      # None: the previous handler was installed outside Python (e.g. jax's preemption notifier
      # for SIGTERM); Python cannot reinstall it, so the default action comes back.
      signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _flag_reduction():
  """flag (bool, this process's) -> int32 scalar array: the max over all processes' flags."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax import sharding as jsh  # pylint: disable=g-import-not-at-top
  mesh = jsh.Mesh(np.asarray(jax.devices()), ("processes",))
  sharding = jsh.NamedSharding(mesh, jsh.PartitionSpec("processes"))
  reduce = jax.jit(jnp.max, out_shardings=jsh.NamedSharding(mesh, jsh.PartitionSpec()))
  local = jax.local_device_count()

  def flags_max(flag: bool):
    x = jax.make_array_from_process_local_data(sharding, np.full((local,), int(flag), np.int32))
    return reduce(x)

  return flags_max
