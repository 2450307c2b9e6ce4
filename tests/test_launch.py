"""launch/*.sh: the --dry-run output is the exact commands (parsed back here), and nothing runs."""
import os
import shlex
import signal
import stat
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSLJAX_ARGS = ["--config", "configs/simclr_resnet50_imagenet.py", "--workdir", "/mnt/shared/run 1",
               "--config.batch_size=4096"]


def _launch(script, *args, env=None, cwd=None):
  return subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args], capture_output=True,
                        text=True, timeout=60, env=env, cwd=cwd)


def _remote(cmd):
  """The shell command a `gcloud ... ssh --command=...` line runs on the workers."""
  (arg,) = [a for a in cmd if a.startswith("--command=")]
  return arg[len("--command="):]


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
  # A Python 3.11 venv (uv finds or downloads 3.11: the default image has 3.10), then the [tpu] extra.
  remote_install = _remote(install)
  assert "uv venv -q --seed --python 3.11 .venv" in remote_install
  assert "pip install -q -c requirements-lock.txt -e '.[tpu]'" in remote_install
  assert remote_install.index("uv venv") < remote_install.index(".venv/bin/python -m pip install")
  # Detached (nohup, all three streams redirected), per-worker log in the workdir, pid recorded.
  remote = _remote(train)
  assert remote.startswith("cd ssljax && ")
  start = "nohup .venv/bin/python -m ssljax.main --distributed " + " ".join(map(shlex.quote, SSLJAX_ARGS))
  assert start + ' > "$L" 2>&1 < /dev/null & echo $! > run.pid;' in remote
  assert "L='/mnt/shared/run 1/logs'/worker_$W.log" in remote and "agent-worker-number" in remote
  assert not os.path.exists(f"/tmp/ssljax-{name}.tar.gz")   # a dry run runs nothing


def test_tpu_pod_python_version_and_gs_workdir():
  out = _launch("tpu_pod.sh", "--dry-run", "--tpu", "p", "--zone", "z", "--python", "3.10", "--",
                *SSLJAX_ARGS)
  assert out.returncode == 2 and "3.11 or newer" in out.stderr
  out = _launch("tpu_pod.sh", "--dry-run", "--python", "3.12", "--tpu", "p", "--zone", "z", "--",
                "--config", "c.py", "--workdir", "gs://bucket/run")
  assert out.returncode == 0, out.stderr
  install, train = [_remote(shlex.split(l)) for l in out.stdout.splitlines()[-2:]]
  assert "--python 3.12 .venv" in install
  assert 'L="$HOME/ssljax_logs"/worker_$W.log' in train   # logs on the worker, not in the bucket
  out = _launch("tpu_pod.sh", "--dry-run", "--tpu", "p", "--zone", "z", "--", "--config", "c.py")
  assert out.returncode == 2 and "--workdir is required" in out.stderr


def test_tpu_pod_without_create_or_install_only_runs():
  out = _launch("tpu_pod.sh", "--dry-run", "--no-install", "--tpu", "pod", "--zone", "z", "--", *SSLJAX_ARGS)
  assert out.returncode == 0, out.stderr
  (line,) = out.stdout.strip().splitlines()
  assert "--worker=all" in shlex.split(line) and "ssljax.main --distributed" in line


def _bash(command, home, path, timeout=30):
  env = dict(os.environ, HOME=str(home), PATH=f"{path}:{os.environ['PATH']}")
  return subprocess.run(["bash", "-c", command], cwd=home, env=env, capture_output=True, text=True,
                        timeout=timeout)


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  return True


def test_tpu_pod_worker_commands_start_detached_and_stop(tmp_path):
  """The run / status / logs / stop commands, executed here as a worker would (gcloud ssh runs them
  from the home directory): the start returns at once, the run goes on with its output in
  <workdir>/logs/worker_<N>.log, stop sends SIGTERM."""
  home, bin_dir, workdir = tmp_path / "home", tmp_path / "bin", tmp_path / "shared run"
  (home / "ssljax" / ".venv" / "bin").mkdir(parents=True)
  bin_dir.mkdir()
  curl = bin_dir / "curl"   # the TPU VM metadata server: this is worker 3
  curl.write_text("#!/usr/bin/env bash\necho 3\n")
  python = home / "ssljax" / ".venv" / "bin" / "python"   # stands in for ssljax.main
  python.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$HOME/args"\n'
                    'trap \'echo "SIGTERM: checkpoint, exit"; exit 0\' TERM\n'
                    'echo "step 1"\nwhile :; do sleep 0.1; done\n')
  for f in (curl, python):
    f.chmod(f.stat().st_mode | stat.S_IEXEC)
  args = ["--config", "c.py", "--workdir", str(workdir), "--config.total_steps=2"]

  def remote(cmd, *extra):
    out = _launch("tpu_pod.sh", cmd, "--dry-run", "--tpu", "p", "--zone", "z", *extra)
    assert out.returncode == 0, out.stderr
    return _remote(shlex.split(out.stdout.strip().splitlines()[-1]))

  start = remote("run", "--no-install", "--", *args)
  pid = None
  try:
    out = _bash(start, home, bin_dir)   # returns: nothing holds the ssh session's streams open
    assert out.returncode == 0, out.stderr
    log = workdir / "logs" / "worker_3.log"
    pid = int((home / "ssljax" / "run.pid").read_text())
    assert out.stdout.strip() == f"worker 3: started pid {pid}, log {log}"
    for _ in range(100):
      if (home / "args").exists() and log.read_text():
        break
      time.sleep(0.1)
    assert (home / "args").read_text().split("\n")[:-1] == ["-m", "ssljax.main", "--distributed", *args]
    assert log.read_text() == "step 1\n"
    again = _bash(start, home, bin_dir)   # a second start while running is refused
    assert again.returncode == 1 and f"already running (pid {pid})" in again.stderr
    status = _bash(remote("status"), home, bin_dir)
    assert status.stdout.splitlines() == [f"worker 3: running (pid {pid}), log {log}", "worker 3: step 1"]
    logs = _bash(remote("logs", "--lines", "5"), home, bin_dir)
    assert logs.stdout == "step 1\n"
    stop = _bash(remote("stop"), home, bin_dir)
    assert stop.stdout.startswith(f"worker 3: sent SIGTERM to pid {pid}")
    for _ in range(100):
      if "SIGTERM: checkpoint, exit" in log.read_text() and not _alive(pid):
        break
      time.sleep(0.1)
    assert "SIGTERM: checkpoint, exit" in log.read_text()
    status = _bash(remote("status"), home, bin_dir)
    assert status.stdout.splitlines()[0] == f"worker 3: not running, log {log}"
    assert _bash(remote("stop"), home, bin_dir).stdout.strip() == "worker 3: not running"
  finally:
    if pid is not None:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass


def test_tpu_pod_subcommand_dry_runs():
  lines = {}
  for cmd in ("status", "stop", "logs"):
    out = _launch("tpu_pod.sh", cmd, "--dry-run", "--tpu", "pod", "--zone", "z", "--project", "pr")
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.strip().splitlines()
    lines[cmd] = shlex.split(line)
    assert lines[cmd][:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"]
    assert "--project=pr" in lines[cmd]
  assert "--worker=all" in lines["status"] and "--worker=all" in lines["stop"]
  assert "--worker=0" in lines["logs"] and "tail -n 100 " in _remote(lines["logs"])
  assert "kill -TERM" in _remote(lines["stop"])
  out = _launch("tpu_pod.sh", "logs", "--dry-run", "--tpu", "pod", "--zone", "z", "--worker", "2",
                "--follow")
  assert "--worker=2" in shlex.split(out.stdout) and " -F " in out.stdout


def _slurm(*args, env=None):
  env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
  out = _launch("slurm.sh", "--dry-run", *args, env=env, cwd=ROOT)
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  i = next(i for i, l in enumerate(lines) if l.startswith("sbatch"))
  assert shlex.split(lines[i].split("<<")[0]) == ["sbatch", f"--chdir={ROOT}"]
  assert lines[i].endswith("<<'SBATCH'") and lines[-1] == "SBATCH"
  return [shlex.split(l) for l in lines[:i]], lines[i + 1:-1], out.stderr


def test_slurm_dry_run():
  pre, body, err = _slurm("--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--", *SSLJAX_ARGS)
  assert pre == [[sys.executable, "-m", "pip", "install", "-q", "-c", f"{ROOT}/requirements-lock.txt",
                  "-e", f"{ROOT}[cuda12]"]]   # JAX's CUDA plugin first
  # data.worker_count = 32 in the ImageNet recipe: 32 grain workers + the task itself.
  for directive in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu",
                    "--cpus-per-task=33", "--requeue", "--signal=B:USR1@120", "--open-mode=append"):
    assert f"#SBATCH {directive}" in body, directive
  assert "data.worker_count=32" in err
  (srun,) = [shlex.split(l) for l in body if l.startswith("srun")]
  assert srun[:2] == ["srun", "--kill-on-bad-exit=1"] and srun[-1] == "&"
  assert srun[2:-1] == [sys.executable, "-m", "ssljax.main", "--distributed", *SSLJAX_ARGS]


def test_slurm_cpus_follow_the_config_overrides_and_flag():
  _, body, _ = _slurm("--no-install", "--", *SSLJAX_ARGS, "--config.data.worker_count=5")
  assert "#SBATCH --cpus-per-task=6" in body
  pre, body, _ = _slurm("--no-install", "--", "--config", "simclr_digits", "--workdir", "w")
  assert pre == [] and "#SBATCH --cpus-per-task=1" in body   # a shipped name; digits: no workers
  _, body, _ = _slurm("--no-install", "--cpus-per-task", "12", "--", *SSLJAX_ARGS,
                      env={"PYTHON": "/nonexistent/python"})   # given: the config is not read
  assert "#SBATCH --cpus-per-task=12" in body
  out = _launch("slurm.sh", "--dry-run", "--no-install", "--", "--config", "no_such_config", "--workdir",
                "w", env=dict(os.environ, PYTHON=sys.executable), cwd=ROOT)
  assert out.returncode == 2 and "could not read data.worker_count" in out.stderr


def test_slurm_batch_script_forwards_usr1_and_requeues(tmp_path):
  """The batch script as SLURM runs it, with srun and scontrol stubbed: SIGUSR1 to the script (what
  --signal=B:USR1@120 sends) reaches the tasks, the script waits for them, then requeues the job."""
  _, body, _ = _slurm("--no-install", "--cpus-per-task", "2", "--", *SSLJAX_ARGS)
  script = tmp_path / "job.sh"
  script.write_text("\n".join(body) + "\n")
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "srun").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$OUT/srun_args"\n'
                                'trap \'echo usr1 > "$OUT/srun_signal"; exit 0\' USR1\n'
                                'touch "$OUT/srun_started"\nwhile :; do sleep 0.1; done\n')
  (bin_dir / "scontrol").write_text('#!/usr/bin/env bash\necho "$@" > "$OUT/scontrol"\n')
  for f in bin_dir.iterdir():
    f.chmod(f.stat().st_mode | stat.S_IEXEC)
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", OUT=str(tmp_path), SLURM_JOB_ID="77")
  job = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
  try:
    for _ in range(100):
      if (tmp_path / "srun_started").exists():
        break
      time.sleep(0.1)
    job.send_signal(signal.SIGUSR1)
    out, err = job.communicate(timeout=30)
  finally:
    job.kill()
  assert job.returncode == 0, err
  assert (tmp_path / "srun_signal").read_text() == "usr1\n"
  assert (tmp_path / "scontrol").read_text() == "requeue 77\n"
  assert (tmp_path / "srun_args").read_text().split("\n")[:-1] == [
      "--kill-on-bad-exit=1", sys.executable, "-m", "ssljax.main", "--distributed", *SSLJAX_ARGS]
  assert "then requeue" in out
  # Without the signal: the tasks' exit code is the job's, and no requeue.
  (tmp_path / "scontrol").unlink()
  (bin_dir / "srun").write_text("#!/usr/bin/env bash\nexit 3\n")
  done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
  assert done.returncode == 3 and not (tmp_path / "scontrol").exists()


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


@pytest.mark.parametrize("script", ["tpu_pod.sh", "slurm.sh", "local_multiprocess.sh"])
def test_help_is_the_whole_header(script):
  out = _launch(script, "--help")
  assert out.returncode == 0
  with open(os.path.join(ROOT, "launch", script)) as f:
    header = [l for l in f.read().split("\nset -euo pipefail")[0].splitlines()[1:]]
  assert out.stdout.splitlines() == [l[2:] if l.startswith("# ") else l[1:] for l in header]
