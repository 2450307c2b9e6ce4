"""What the side-by-side benchmarks share: the line-protocol peer worker and package versions."""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any, Sequence

from benchmarks import report
from ssljax.cpu import host_memory

PEER_PYTHON = os.path.join(report.ROOT, ".venv-peer", "bin", "python")


class LineWorker:
  """A worker process (e.g. under the peer venv) that answers one JSON line per request line.

  The worker prints one JSON line when ready (kept as `info`), then one per request; 'quit' ends it.
  """

  def __init__(self, cmd: Sequence[str], name: str):
    if not os.path.exists(cmd[0]):
      raise FileNotFoundError(f"{cmd[0]} not found: run `bash benchmarks/peer_env.sh` first")
    self.name = name
    # The peer runs with the environment this benchmark was started with, not with what
    # ssljax's host_memory.reexec_with_host_defaults() added for ssljax's side.
    self.proc = subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 cwd=report.ROOT, bufsize=1, env=host_memory.original_environ())
    self.info = self._read()

  def _read(self) -> dict[str, Any]:
    line = self.proc.stdout.readline()
    if not line:
      self.proc.wait()
      raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
    return json.loads(line)

  def _ask(self, line: str) -> dict[str, Any]:
    self.proc.stdin.write(line + "\n")
    self.proc.stdin.flush()
    return self._read()

  def close(self) -> None:
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)
      except (BrokenPipeError, subprocess.TimeoutExpired):
        self.proc.kill()
        self.proc.wait()


def version(name: str) -> str:
  """The installed version of package `name`, or '?'."""
  try:
    from importlib.metadata import version as _v  # pylint: disable=g-import-not-at-top
    return _v(name)
  except Exception:  # pragma: no cover
    return "?"


def fastest_torch_threads(fn, max_threads: int, reps: int = 3) -> tuple[int, dict[int, float]]:
  """The faster torch intra-op thread count, 1 or `max_threads`, for the work `fn()` does.

  Runs in the peer's worker (needs torch). On a shared, oversubscribed machine torch's
  multi-thread ops can be several times slower than one thread (its workers spin-wait on each
  other); on a quiet one `max_threads` wins. Times `reps` calls of `fn` at each count, alternating,
  keeps the count with the smaller median and leaves torch set to it, so that the peer gets its
  better setting. Returns (threads, {count: median seconds}).
  """
  import statistics
  import time
  import torch
  candidates = sorted({1, max_threads})
  times = {n: [] for n in candidates}
  for _ in range(reps):
    for n in candidates:
      torch.set_num_threads(n)
      t0 = time.perf_counter()
      fn()
      times[n].append(time.perf_counter() - t0)
  medians = {n: statistics.median(t) for n, t in times.items()}
  best = min(candidates, key=medians.get)
  torch.set_num_threads(best)
  return best, medians


def conv_part_shape(part: str, tiny: bool = False) -> tuple[int, int]:
  """(side, channels) of a peer_throughput CONV_PARTS name, resnet18_conv_<side>x<channels>;
  tiny: 8 channels."""
  side, channels = (int(v) for v in part.rsplit("_", 1)[1].split("x"))
  return side, 8 if tiny else channels


def conv_part_inputs(n: int, side: int, channels: int):
  """Deterministic float32 input [n, side, side, C] (NHWC) and kernel [3, 3, C, C] (HWIO) of a conv
  part, as functions of their indices, so that the torch worker builds the same values (NCHW /
  OIHW) and both sides' losses can be compared."""
  import numpy as np
  i, h, w, c = np.meshgrid(np.arange(n), np.arange(side), np.arange(side), np.arange(channels),
                           indexing="ij")
  x = np.sin(0.1 * i + 0.3 * h + 0.5 * w + 0.7 * c).astype(np.float32)
  kh, kw, ci, co = np.meshgrid(np.arange(3), np.arange(3), np.arange(channels), np.arange(channels),
                               indexing="ij")
  k = (np.cos(kh - kw + 0.2 * ci + 0.3 * co) / (3.0 * np.sqrt(channels))).astype(np.float32)
  return x, k
