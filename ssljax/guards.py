"""The training loop's guard rails: the non-finite policy, loss-spike and collapse warnings, and
stopping cleanly on SIGTERM / SIGINT (a checkpoint at the next step boundary)."""
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
  """Turns SIGTERM / SIGINT into a flag read at the next step boundary (checkpoint, then exit)."""

  def __init__(self):
    self.stop, self.signal_name, self._previous = False, "", {}
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass

  def _handle(self, signum, frame):
    del frame
    if self.stop:  # a second signal: stop now
      raise KeyboardInterrupt
    self.stop, self.signal_name = True, signal.Signals(signum).name

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
