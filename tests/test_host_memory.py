"""Host memory (ssljax.cpu.host_memory): huge pages for XLA:CPU's per-call buffers, by re-exec."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ssljax.cpu import host_memory

GOOD = dict(glibc=(2, 36), thp="madvise")


def test_tuned_environ_adds_the_tunable_and_remembers_the_original():
  env = host_memory.tuned_environ({"JAX_PLATFORMS": "cpu"}, **GOOD)
  assert env["GLIBC_TUNABLES"] == host_memory.SETTING and env[host_memory.ENV_ORIGINAL] == ""
  env = host_memory.tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0",
                                   "JAX_PLATFORMS": "cpu"}, **GOOD)
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0:" + host_memory.SETTING
  assert host_memory.original_environ(env)["GLIBC_TUNABLES"] == "glibc.malloc.tcache_count=0"
  assert host_memory.ENV_ORIGINAL not in host_memory.original_environ(env)
  restarted = host_memory.tuned_environ({"JAX_PLATFORMS": "cpu"}, **GOOD)
  assert "GLIBC_TUNABLES" not in host_memory.original_environ(restarted)


@pytest.mark.parametrize("environ,kw", [
    ({host_memory.ENV_OPT_OUT: "0", "JAX_PLATFORMS": "cpu"}, GOOD),                  # opted out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "JAX_PLATFORMS": "cpu"}, GOOD),    # user's value
    ({host_memory.ENV_ORIGINAL: "", "JAX_PLATFORMS": "cpu"}, GOOD),                  # restarted once
    ({"JAX_PLATFORMS": "cuda,cpu"}, GOOD),                                           # accelerator
    ({"JAX_PLATFORMS": "cpu"}, dict(glibc=(2, 31), thp="madvise")),                 # old glibc
    ({"JAX_PLATFORMS": "cpu"}, dict(glibc=(2, 36), thp="never")),                   # THP off
])
def test_tuned_environ_leaves_the_process_alone(environ, kw):
  assert host_memory.tuned_environ(environ, **kw) is None


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
  p = tmp_path / "enabled"
  p.write_text("always [madvise] never\n")
  assert host_memory.thp_mode(str(p)) == "madvise"
  assert host_memory.thp_mode(str(tmp_path / "missing")) is None


needs_thp = pytest.mark.skipif(
    host_memory.glibc_version() is None or host_memory.glibc_version() < (2, 35)
    or host_memory.thp_mode() in (None, "never"),
    reason="needs glibc >= 2.35 and transparent huge pages")

# A script that calls reexec_with_host_defaults() first, then runs a jitted program whose temporary
# buffer (48 MB) is above glibc's mmap threshold and reports the page faults of its calls 3-8.
_PROBE = textwrap.dedent("""
    import json, os, resource, sys
    from ssljax.cpu import host_memory
    if sys.argv[1] == "on":
      host_memory.reexec_with_host_defaults()
    import jax, jax.numpy as jnp
    x = jnp.ones((16384, 768), jnp.float32)
    f = jax.jit(lambda x: jnp.sum(jnp.tanh(x * 2.0 + 1.0) * jnp.exp(-x)) + jnp.sum(jnp.sin(x) * x))
    temp = f.lower(x).compile().memory_analysis().temp_size_in_bytes
    for _ in range(2):
      f(x).block_until_ready()
    faults = []
    for _ in range(6):
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      f(x).block_until_ready()
      faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    thp = [line.split(":")[1].strip() for line in open("/proc/self/status")
           if line.startswith("THP_enabled")]
    print(json.dumps({"thp_enabled": thp[0] if thp else "?",
                      "temp_pages": temp // 4096, "faults": faults, "pid": os.getpid(),
                      "tunables": os.environ.get("GLIBC_TUNABLES", ""), "argv": sys.argv[1:]}))
""")


def _run(tmp_path, mode):
  script = tmp_path / "probe.py"
  script.write_text(_PROBE)
  env = {k: v for k, v in os.environ.items()
         if k not in (host_memory.ENV_OPT_OUT, host_memory.ENV_ORIGINAL, "GLIBC_TUNABLES")}
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.Popen([sys.executable, str(script), mode, "--extra"], env=env,
                          stdout=subprocess.PIPE, text=True)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0
  return proc.pid, json.loads(out.strip().splitlines()[-1])


@needs_thp
def test_reexec_restarts_the_same_process_and_saves_the_page_faults(tmp_path):
  pid_off, off = _run(tmp_path, "off")
  pid_on, on = _run(tmp_path, "on")
  assert off["pid"] == pid_off and off["tunables"] == ""
  # Restarted in place: the same pid and arguments, the tunable set.
  assert on["pid"] == pid_on and on["argv"] == ["on", "--extra"]
  assert on["tunables"] == host_memory.SETTING
  # Without it every call faults the whole temporary buffer in 4 KiB pages; with it, in 2 MiB pages.
  assert min(off["faults"]) > 0.5 * off["temp_pages"], off
  # Measured: 25-540 of 12288. Once (a full-suite run from a fresh clone, right after its install,
  # the other test worker busy) a probe faulted in 4 KiB pages all the same, with THP on and no
  # fallback counted in /proc/vmstat (cause not found; the rerun passed), so a probe that shows no
  # saving is run again, up to twice, before the test fails.
  tries = [on]
  while max(tries[-1]["faults"]) >= 0.15 * on["temp_pages"] and len(tries) < 3:
    tries.append(_run(tmp_path, "on")[1])
  assert max(tries[-1]["faults"]) < 0.15 * on["temp_pages"], tries
