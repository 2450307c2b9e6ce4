"""launch/*.sh: the --dry-run output is the exact commands (parsed back here), and nothing runs."""
import os
import shlex
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSLJAX_ARGS = ["--config", "configs/simclr_resnet50_imagenet.py", "--workdir", "/mnt/shared/run 1",
               "--config.batch_size=4096"]


def _launch(script, *args, env=None, cwd=None):
  return subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args], capture_output=True,
                        text=True, timeout=60, env=env, cwd=cwd)


def test_tpu_pod_dry_run(tmp_path):
  name = f"ssljax-test-{os.getpid()}"
  out = _launch("tpu_pod.sh", "--dry-run", "--tpu", name, "--zone", "us-central2-b", "--project", "proj",
                "--create", "--", *SSLJAX_ARGS)
  assert out.returncode == 0, out.stderr
  lines = [shlex.split(l) for l in out.stdout.strip().splitlines()]
  assert [l[:4] for l in lines] == [
      ["gcloud", "compute", "tpus", "tpu-vm"], ["git", "-C", ROOT, "archive"],
      ["gcloud", "compute", "tpus", "tpu-vm"], ["gcloud", "compute", "tpus", "tpu-vm"],
      ["gcloud", "compute", "tpus", "tpu-vm"]]
  create, _, scp, install, train = lines
  assert create[4:6] == ["create", name] and "--accelerator-type=v4-32" in create
  assert "--zone=us-central2-b" in create and "--project=proj" in create
  assert scp[4] == "scp" and "--worker=all" in scp and f"{name}:ssljax.tar.gz" in scp
  for cmd in (install, train):
    assert cmd[4:6] == ["ssh", name] and "--worker=all" in cmd and "--zone=us-central2-b" in cmd
  remote_install = [a for a in install if a.startswith("--command=")][0]
  assert "pip install" in remote_install and "jax[tpu]" in remote_install
  remote = shlex.split([a for a in train if a.startswith("--command=")][0][len("--command="):])
  assert remote[:3] == ["cd", "ssljax", "&&"]
  assert remote[3:] == ["python3", "-m", "ssljax.main", "--distributed", *SSLJAX_ARGS]
  assert not os.path.exists(f"/tmp/ssljax-{name}.tar.gz")   # a dry run runs nothing


def test_tpu_pod_without_create_or_install_only_runs():
  out = _launch("tpu_pod.sh", "--dry-run", "--no-install", "--tpu", "pod", "--zone", "z", "--", *SSLJAX_ARGS)
  assert out.returncode == 0, out.stderr
  (line,) = out.stdout.strip().splitlines()
  assert "--worker=all" in shlex.split(line) and "ssljax.main --distributed" in line


def test_slurm_dry_run():
  out = _launch("slurm.sh", "--dry-run", "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu",
                "--", *SSLJAX_ARGS, cwd=ROOT)
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert shlex.split(lines[0].split("<<")[0]) == ["sbatch", f"--chdir={ROOT}"]
  assert lines[0].endswith("<<'SBATCH'") and lines[-1] == "SBATCH"
  body = lines[1:-1]
  for directive in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu"):
    assert f"#SBATCH {directive}" in body, directive
  (srun,) = [shlex.split(l) for l in body if l.startswith("srun")]
  assert srun[:2] == ["srun", "--kill-on-bad-exit=1"]
  assert srun[2:] == ["python", "-m", "ssljax.main", "--distributed", *SSLJAX_ARGS]


def test_local_multiprocess_dry_run(tmp_path):
  workdir = str(tmp_path / "never_created")
  out = _launch("local_multiprocess.sh", "--dry-run", "--num-processes", "3", "--port", "23456",
                "--cpu-devices", "2", "--", "--config", "configs/simclr_digits.py", "--workdir", workdir)
  assert out.returncode == 0, out.stderr
  lines = [shlex.split(l) for l in out.stdout.strip().splitlines()]
  assert len(lines) == 3
  for i, cmd in enumerate(lines):
    assert cmd[:3] == ["env", "JAX_PLATFORMS=cpu", "XLA_FLAGS=--xla_force_host_platform_device_count=2"]
    assert cmd[3:] == ["python", "-m", "ssljax.main", "--coordinator_address=localhost:23456",
                       "--num_processes=3", f"--process_id={i}", "--config", "configs/simclr_digits.py",
                       "--workdir", workdir]
  assert not os.path.exists(workdir)


def test_local_multiprocess_runs_the_printed_commands_and_reports_failures(tmp_path):
  """With $PYTHON pointing at a stub, the launcher starts N processes with exactly those arguments."""
  stub = tmp_path / "python_stub"
  stub.write_text('#!/usr/bin/env bash\nfor a in "$@"; do case "$a" in --process_id=*) id="${a#*=}";; esac; done\n'
                  'printf "%s\\n" "$@" > "$STUB_OUT/args_$id"\n[ "$id" != "$STUB_FAIL" ]\n')
  stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
  workdir = tmp_path / "run"
  env = dict(os.environ, PYTHON=str(stub), STUB_OUT=str(tmp_path), STUB_FAIL="none")
  args = ["--num-processes", "2", "--port", "23457", "--", "--config", "c.py", "--workdir", str(workdir)]
  out = _launch("local_multiprocess.sh", *args, env=env)
  assert out.returncode == 0, out.stderr
  for i in range(2):
    got = (tmp_path / f"args_{i}").read_text().split("\n")[:-1]
    assert got == ["-m", "ssljax.main", "--coordinator_address=localhost:23457", "--num_processes=2",
                   f"--process_id={i}", "--config", "c.py", "--workdir", str(workdir)]
    assert (workdir / f"process_{i}.log").exists()
  env["STUB_FAIL"] = "1"
  out = _launch("local_multiprocess.sh", *args, env=env)
  assert out.returncode == 1 and "process 1 failed" in out.stderr


@pytest.mark.parametrize("script", ["tpu_pod.sh", "slurm.sh", "local_multiprocess.sh"])
def test_launchers_reject_bad_usage(script):
  extra = ["--tpu", "p", "--zone", "z"] if script == "tpu_pod.sh" else []
  out = _launch(script, "--dry-run", *extra)   # no ssljax flags after --
  assert out.returncode == 2 and "expected ssljax flags after --" in out.stderr
  out = _launch(script, "--bogus", "--", "--config", "c.py", "--workdir", "w")
  assert out.returncode == 2 and "unknown option --bogus" in out.stderr


def test_imagenet_config_validates_for_a_v4_32():
  """The config the launch examples and README use: TFDS imagenet2012, valid on 16 devices / 4 hosts."""
  from conftest import load_config
  from ssljax import config as config_lib
  from ssljax import parallel
  c = load_config("simclr_resnet50_imagenet")
  assert (c.data.source, c.data.tfds_name, c.data.image_size) == ("tfds", "imagenet2012", 224)
  config_lib.validate(c, device_count=16, process_count=4)
  assert parallel.mesh_shape(c.mesh, 16) == {"data": 16, "fsdp": 1, "model": 1}
  with pytest.raises(config_lib.ConfigError, match="batch_size=4096"):
    config_lib.validate(c, device_count=16, process_count=3)
