"""Installs: the per-platform extras, the shipped configs as `ssljax.configs`, and the accelerator checks
that `import ssljax` runs (ssljax/_platforms.py), with the device nodes injected instead of read from /dev."""
import importlib
import os
import runpy
import subprocess
import sys

import pytest
import setuptools
from packaging.requirements import Requirement

from ssljax import _platforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup_kwargs():
  """The keyword arguments setup.py passes to setuptools.setup (nothing is built)."""
  got = {}
  orig = setuptools.setup
  setuptools.setup = lambda **kw: got.update(kw)
  try:
    runpy.run_path(os.path.join(ROOT, "setup.py"))
  finally:
    setuptools.setup = orig
  return got


def _pins(reqs):
  return {Requirement(r).name: Requirement(r) for r in reqs}


def test_setup_declares_one_extra_per_platform(setup_kwargs):
  assert setup_kwargs["python_requires"] == ">=3.11"
  jax = _pins(setup_kwargs["install_requires"])["jax"]
  (version,) = [s.version for s in jax.specifier if s.operator == "=="]
  extras = setup_kwargs["extras_require"]
  cuda = _pins(extras["cuda12"])["jax"]
  assert cuda.extras == {"cuda12"} and str(cuda.specifier) == f"=={version}"
  tpu = _pins(extras["tpu"])
  assert tpu["jax"].extras == {"tpu"} and str(tpu["jax"].specifier) == f"=={version}"
  assert str(tpu["libtpu"].specifier).startswith("==0.0.42.")
  prepare = _pins(extras["prepare"])
  (tf,) = [r for n, r in prepare.items() if n in ("tensorflow", "tensorflow-cpu")]
  assert str(tf.specifier).startswith("==")   # a version checked against the lock, not "latest"


def test_setup_ships_the_configs_folder_as_ssljax_configs(setup_kwargs):
  assert "ssljax.configs" in setup_kwargs["packages"]
  assert setup_kwargs["package_dir"] == {"ssljax.configs": "configs"}
  assert os.path.isfile(os.path.join(ROOT, "configs", "__init__.py"))
  assert "ssljax" in setup_kwargs["packages"] and "ssljax.methods" in setup_kwargs["packages"]


def test_ssljax_configs_imports_from_outside_the_checkout(tmp_path):
  """The installed package (editable here) finds configs/ as `ssljax.configs`, whatever the cwd."""
  code = ("import importlib, os, ssljax.configs as c; print(os.path.realpath(c.__path__[0])); "
          "m = importlib.import_module('ssljax.configs.simclr_digits'); print(m.get_config().method)")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  folder, method = out.stdout.split()
  assert method == "simclr"
  assert os.path.isfile(os.path.join(folder, "common.py"))
  assert os.path.isfile(os.path.join(folder, "simclr_digits.py"))
  if os.path.realpath(ROOT) in os.path.realpath(importlib.import_module("ssljax").__file__):
    assert folder == os.path.realpath(os.path.join(ROOT, "configs"))   # editable: the repo's folder


# --- import ssljax: accelerator checks --------------------------------------------------------------

def _has(*modules):
  return lambda m: m in modules


def _hint(devices, *installed, environ=None):
  return _platforms.accelerator_hint(environ={} if environ is None else environ, devices=devices,
                                     has=_has(*installed), jax_version=lambda: "0.10.2")


GPU = _platforms.Devices(nvidia=("/dev/nvidia0", "/dev/nvidiactl"))
TPU = _platforms.Devices(tpu=("/dev/accel0", "/dev/accel1"))
NONE = _platforms.Devices()


def test_hint_names_the_gpu_and_the_cuda_install():
  hint = _hint(GPU)
  assert "\n" not in hint and "/dev/nvidia0" in hint and "CPU" in hint
  assert "pip install 'jax[cuda12]==0.10.2'" in hint and "pip install -e '.[cuda12]'" in hint


@pytest.mark.parametrize("plugin", ["jax_plugins.xla_cuda12", "jax_cuda12_plugin",
                                    "jax_plugins.xla_cuda13"])
def test_no_hint_when_jax_has_a_cuda_plugin(plugin):
  assert _hint(GPU, plugin) is None


def test_hint_names_the_tpu_and_the_tpu_install():
  hint = _hint(TPU)
  assert "\n" not in hint and "/dev/accel0" in hint
  assert "pip install 'jax[tpu]==0.10.2'" in hint and "pip install -e '.[tpu]'" in hint
  assert _hint(TPU, "libtpu") is None


def test_no_hint_without_accelerators_or_with_explicit_platforms():
  assert _hint(NONE) is None and _hint(NONE, "libtpu") is None
  assert _hint(GPU, environ={"JAX_PLATFORMS": "cpu"}) is None
  assert _hint(TPU, environ={"JAX_PLATFORMS": "cpu"}) is None


def test_hint_without_jax_version_still_names_the_extra():
  hint = _platforms.accelerator_hint(environ={}, devices=GPU, has=_has(), jax_version=lambda: None)
  assert "pip install 'jax[cuda12]'" in hint


@pytest.mark.parametrize("devices,installed,expected", [
    (NONE, ("libtpu",), "cpu"),                                         # libtpu for AOT, no chip
    (GPU, ("libtpu", "jax_plugins.xla_cuda12"), "cuda,cpu"),
    (GPU, ("libtpu",), "cpu"),                                          # GPU but no plugin: hint says so
    (TPU, ("libtpu",), None),                                           # a real TPU VM: leave JAX be
    (NONE, (), None),                                                   # no libtpu: nothing to quiet
])
def test_quiet_tpu_probe(devices, installed, expected):
  environ = {}
  assert _platforms.quiet_tpu_probe(environ, devices, _has(*installed)) == expected
  assert environ.get("JAX_PLATFORMS") == expected
  environ = {"JAX_PLATFORMS": "tpu"}
  assert _platforms.quiet_tpu_probe(environ, devices, _has(*installed)) is None
  assert environ == {"JAX_PLATFORMS": "tpu"}


def test_check_prints_one_line_then_quiets(capsys):
  environ = {}
  hint = _platforms.check(environ, devices=GPU, has=_has("libtpu"), jax_version=lambda: "0.10.2")
  err = capsys.readouterr().err
  assert err == hint + "\n" and "cuda12" in err
  assert environ["JAX_PLATFORMS"] == "cpu"
  assert _platforms.check({}, devices=NONE, has=_has("libtpu")) is None
  assert capsys.readouterr().err == ""
  # A data worker process (multiprocessing child) stays quiet: its parent printed the line.
  assert _platforms.check({}, devices=GPU, has=_has(), worker_process=lambda: True) is not None
  assert capsys.readouterr().err == ""


def test_worker_process_is_false_here_and_true_in_a_multiprocessing_child():
  import multiprocessing
  assert not _platforms._worker_process()
  with multiprocessing.get_context("spawn").Pool(1) as pool:
    assert pool.apply(_platforms._worker_process)


def test_probe_reads_the_globs(tmp_path):
  for name in ("nvidiactl", "nvidia0", "nvidia-uvm", "accel0", "accel1"):
    (tmp_path / name).touch()
  d = tmp_path.as_posix()
  got = _platforms.probe(nvidia_globs=(f"{d}/nvidiactl", f"{d}/nvidia[0-9]*"), tpu_globs=(f"{d}/accel*",))
  assert got.nvidia == (f"{d}/nvidia0", f"{d}/nvidiactl")
  assert got.tpu == (f"{d}/accel0", f"{d}/accel1")
  assert _platforms.tpu_attached(got) and not _platforms.tpu_attached(_platforms.Devices(nvidia=got.nvidia))
  assert _platforms.probe(nvidia_globs=(f"{d}/none*",), tpu_globs=()) == _platforms.Devices()


def test_import_ssljax_sets_jax_platforms_where_libtpu_has_no_chip(tmp_path):
  """This machine (CI, a laptop): libtpu from the [test] extra, no TPU. `import ssljax` quiets the probe."""
  if not _platforms._has("libtpu"):
    pytest.skip("libtpu not installed")
  devices = _platforms.probe()
  if devices.tpu:
    pytest.skip("a TPU is attached")
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  out = subprocess.run([sys.executable, "-c", "import os, ssljax; print(os.environ['JAX_PLATFORMS'])"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  want = "cuda,cpu" if devices.nvidia and _platforms.cuda_plugin() else "cpu"
  assert out.stdout.strip() == want
  if not devices.nvidia:
    assert out.stderr == ""   # no accelerator, nothing to say


# --- the extras resolve from the package registry --------------------------------------------------

@pytest.mark.slow
def test_extras_resolve_with_the_lock(tmp_path):
  """`pip install --dry-run -c requirements-lock.txt '.[cuda12,tpu,prepare]'` for a fresh venv (needs the
  package registry). All three in one resolution: if they resolve together, each resolves alone.

  The registry serves no separate wheel metadata (PEP 658), so a plain dry run downloads every wheel
  (3.2 GB for the CUDA libraries, twice with pip's cache: a CI machine ran out of disk). `fast-deps`
  reads each wheel's METADATA through HTTP range requests instead (9 MB, 10 s here), and pip falls back
  to whole downloads where a server refuses ranges; no cache, and pip's temporary files in tmp_path."""
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
  report = tmp_path / "report.json"
  (tmp_path / "tmp").mkdir()
  out = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                        "--dry-run", "-q", "--no-cache-dir", "--use-feature=fast-deps", "--report", str(report),
                        "-c", "requirements-lock.txt", ".[cuda12,tpu,prepare]"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
  if out.returncode != 0 and ("NewConnectionError" in out.stderr or "Max retries" in out.stderr):
    pytest.skip("package registry unreachable")
  assert out.returncode == 0, out.stderr[-3000:]
  import json
  names = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
           for i in json.loads(report.read_text())["install"]}
  assert names["jax"] == "0.10.2" and names["jaxlib"] == "0.10.2"
  assert names["jax-cuda12-plugin"] == "0.10.2" and names["libtpu"].startswith("0.0.42.")
  assert names["tensorflow-cpu"] and names["numpy"] == "2.4.6"   # TensorFlow takes the lock's numpy
