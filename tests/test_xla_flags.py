"""ssljax's default XLA:CPU flags (ssljax.cpu.xla_flags): how they are added, only for a CPU run,
and that they reach the compiled program."""
import subprocess
import sys
import textwrap

import pytest

from ssljax.cpu import xla_flags

FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def test_appends_to_existing_flags_and_is_idempotent():
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
  added = xla_flags.apply_cpu_defaults(env)
  assert added == list(xla_flags.CPU_DEFAULTS) and added[0].startswith(FLAG + "=")
  assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", *added]
  assert xla_flags.apply_cpu_defaults(env) == []          # a second call adds nothing
  assert env["XLA_FLAGS"].split().count(added[0]) == 1


def test_users_own_setting_wins_and_opt_out():
  env = {"XLA_FLAGS": f"{FLAG}= --foo=1", "JAX_PLATFORMS": "cpu"}
  assert xla_flags.apply_cpu_defaults(env) == []
  assert env["XLA_FLAGS"] == f"{FLAG}= --foo=1"
  env = {xla_flags.ENV_OPT_OUT: "0", "JAX_PLATFORMS": "cpu"}
  assert xla_flags.apply_cpu_defaults(env) == [] and "XLA_FLAGS" not in env
  env = {"JAX_PLATFORMS": "cpu"}
  assert xla_flags.apply_cpu_defaults(env) and env["XLA_FLAGS"] == " ".join(xla_flags.CPU_DEFAULTS)


@pytest.mark.parametrize("environ,setting,added", [
    ({"JAX_PLATFORMS": "cuda"}, "auto", False),       # a GPU run: no CPU flag
    ({"JAX_PLATFORMS": "tpu,cpu"}, "auto", False),    # a TPU run
    ({"JAX_PLATFORMS": "cpu"}, "off", False),         # the config switch off
    ({"JAX_PLATFORMS": "cuda"}, "on", True),          # on: always
    ({"JAX_PLATFORMS": "cpu,cuda"}, "auto", True),
])
def test_flags_only_for_a_cpu_run(environ, setting, added):
  env = dict(environ)
  got = xla_flags.apply_cpu_defaults(env, setting=setting)
  assert (got == list(xla_flags.CPU_DEFAULTS)) == added
  assert ("XLA_FLAGS" in env) == added


def test_a_bad_setting_names_itself():
  with pytest.raises(ValueError, match=r"cpu_tuning='maybe'; expected one of"):
    xla_flags.apply_cpu_defaults({"JAX_PLATFORMS": "cpu"}, setting="maybe")


_PROBE = textwrap.dedent("""
    import sys
    from ssljax.cpu import xla_flags
    if sys.argv[1] == "on":
      xla_flags.apply_cpu_defaults()
    import jax, jax.numpy as jnp
    x = jnp.ones((8, 16, 16, 32)); w = jnp.ones((3, 3, 32, 32))   # big enough for YNNPACK
    f = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    text = f.lower(x, w).compile().as_text()
    lines = text.splitlines()
    print("YNN" if any("ynn_fusion" in l for l in lines) else "NOYNN",
          sum("convolution(" in l for l in lines))
""")


def _probe(mode):
  env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout.split()


def test_convolutions_leave_ynnpack_only_with_the_defaults():
  """Without the defaults this jaxlib puts the conv in a YNNPACK fusion; with them it does not."""
  off, on = _probe("off"), _probe("on")
  assert int(on[1]) >= 1 and int(off[1]) >= 1
  assert off[0] == "YNN", "this jaxlib no longer sends convolutions to YNNPACK: revisit the default"
  assert on[0] == "NOYNN"


def test_a_cpu_run_without_the_flags_warns_once(monkeypatch):
  """A script that builds a train step without `apply_cpu_defaults()` hears of it once."""
  import warnings
  monkeypatch.setattr(xla_flags, "_warned_missing", False)
  with pytest.warns(xla_flags.MissingCpuFlagsWarning, match=r"apply_cpu_defaults\(\) before"):
    got = xla_flags.warn_if_missing("auto", {"XLA_FLAGS": "--foo=1"}, backend="cpu")
  assert got == list(xla_flags.CPU_DEFAULTS)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert xla_flags.warn_if_missing("auto", {}, backend="cpu")     # still missing; said once
    for env, setting, backend in [({"XLA_FLAGS": " ".join(xla_flags.CPU_DEFAULTS)}, "auto", "cpu"),
                                  ({}, "off", "cpu"), ({}, "auto", "gpu"),
                                  ({xla_flags.ENV_OPT_OUT: "0"}, "auto", "cpu")]:
      monkeypatch.setattr(xla_flags, "_warned_missing", False)
      assert xla_flags.warn_if_missing(setting, env, backend=backend) == [], (env, setting, backend)


@pytest.mark.parametrize("setting,warns", [("auto", True), ("off", False)])
def test_building_a_train_step_checks_the_flags(monkeypatch, setting, warns):
  import types
  import warnings

  import ml_collections

  from ssljax import build
  monkeypatch.setattr(xla_flags, "_warned_missing", False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")   # without the flag
  monkeypatch.delenv(xla_flags.ENV_OPT_OUT, raising=False)
  method = types.SimpleNamespace(config=ml_collections.ConfigDict({"model": {"cpu_tuning": setting}}))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    build.make_train_step(method, tx=None, lr_fn=None)
  said = [w for w in caught if issubclass(w.category, xla_flags.MissingCpuFlagsWarning)]
  assert len(said) == int(warns), [str(w.message) for w in caught]
