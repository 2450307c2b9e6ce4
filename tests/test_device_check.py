"""benchmarks/device_check.sh: the one-call GPU check, run here as its CPU smoke test, and the
orchestrator's bookkeeping (budget, partial results, offline installs)."""
import os
import re
import subprocess
import sys

import pytest

from benchmarks import device_check as dc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TITLES = list(dc._TITLES.values())


def test_smoke_runs_every_section_and_prints_every_table(tmp_path):
  out = tmp_path / "BENCHMARKS.md"
  env = dict(os.environ, PYTHON=sys.executable)
  run = subprocess.run(["bash", "benchmarks/device_check.sh", "--smoke", "--out", str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=200)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
  for title in TITLES + [dc.SUMMARY_TITLE]:
    assert f"## {title}\n" in run.stdout, f"table {title!r} not printed"
  text = out.read_text()
  sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, re.S | re.M))
  for title in TITLES:
    body = sections[title]
    rows = [l for l in body.splitlines() if l.startswith("| ") and not l.startswith("| ---")]
    assert len(rows) >= 2, f"{title}: no rows in\n{body}"
    assert "- device: cpu" in body, f"{title} does not name the device"
    assert "error:" not in body and "Incomplete" not in body, f"{title}:\n{body}"
  correctness = sections["Device check: kernel correctness"]
  assert correctness.count(" ok") >= 10 and "FAIL" not in correctness, correctness
  summary = sections[dc.SUMMARY_TITLE]
  assert all(f"| {name} | ok |" in summary for name in dc.SECTIONS), summary
  assert "--download-wheels" in summary    # says how to run it where it has not run yet
  train = sections["Device check: train-step throughput"]
  assert "device-resident batch" in train, train
  for where in ("device", "host"):   # pipeline off / host augmentation / device augmentation
    assert f"grain (0 workers, {where} aug) + step" in train, train


def test_a_failing_section_keeps_its_rows_and_the_others(tmp_path, monkeypatch):
  out = tmp_path / "B.md"
  out.write_text("# ssljax benchmarks\n\n## Other\n\nkept\n")
  calls = []

  def fake_child(name, args, timeout, seen):
    calls.append((name, timeout))
    seen["device"] = "Fake GPU"
    rows = "| a | b |\n|---|---|\n| 1 | 2 |"
    dc.replace_section(str(out), dc._TITLES[name], f"- device: Fake GPU\n\n{rows}\n\n_Incomplete: "
                       "this section was still running when it was written._")
    if name == "attention":
      return "timed out after 50 s", 50.0, ["compiling", "Killed"]
    return "ok", 1.0, []

  monkeypatch.setattr(dc, "_run_child", fake_child)
  ns = type("Args", (), dict(sections=["correctness", "attention", "contrastive"], budget=200.0,
                             smoke=False, out=str(out)))()
  assert dc.orchestrate(ns) == 1
  text = out.read_text()
  assert "## Other\n\nkept" in text
  att = text.split("## Device check: attention TFLOP/s")[1].split("\n## ")[0]
  assert "| 1 | 2 |" in att and "did not finish: timed out after 50 s" in att and "Killed" in att
  assert "Incomplete" not in att
  assert "| attention | timed out after 50 s | 50 |" in text and "| contrastive | ok | 1 |" in text
  assert "- device: Fake GPU" in text.split(f"## {dc.SUMMARY_TITLE}")[1]
  # The budget is shared out by the sections' weights (the fake children take no time, so what
  # the first leaves goes to the next).
  shares = [dc.SECTIONS[n][0][0] for n in ("correctness", "attention", "contrastive")]
  assert calls[0][1] == pytest.approx(200 * shares[0] / sum(shares), rel=0.02)
  assert all(t <= 200 for _, t in calls)
  assert [n for n, _ in calls] == ["correctness", "attention", "contrastive"]


def test_budget_skips_sections_that_cannot_start(tmp_path, monkeypatch):
  monkeypatch.setattr(dc, "_run_child", lambda *a: pytest.fail("no section fits in 5 s"))
  ns = type("Args", (), dict(sections=["train"], budget=5.0, smoke=False, out=str(tmp_path / "B.md")))()
  assert dc.orchestrate(ns) == 1
  assert "| train | skipped: out of time budget |" in (tmp_path / "B.md").read_text()


def test_install_wheels_says_how_to_get_missing_packages(tmp_path, monkeypatch, capsys):
  assert dc.install_wheels(str(tmp_path)) == 0          # this venv has everything
  monkeypatch.setattr(dc, "NEEDED", dc.NEEDED + [("ssljax_no_such_module", "nothing==1.0")])
  assert dc.install_wheels(str(tmp_path / "empty")) == 1
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert "ssljax_no_such_module" in line and "--download-wheels" in line


def test_download_commands_pin_what_the_check_imports():
  with_deps, alone = dc.download_commands("3.12", "W")
  for cmd in (with_deps, alone):
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and cmd[cmd.index("--dest") + 1] == "W"
    assert "--only-binary=:all:" in cmd
  for req in ("grain==0.2.18", "ml-collections==1.1.0", "matplotlib==3.11.2"):
    assert req in with_deps, req
  assert "--no-deps" in alone and "scikit-learn==1.9.1" in alone and "--no-deps" not in with_deps
  assert not any(r.startswith(("jax", "flax", "optax", "orbax", "chex")) for r in with_deps[4:])


def test_kernel_sections_import_without_the_wheel_packages():
  """Without .whl/ on the GPU machine the kernel sections still run: they need only jax."""
  code = (
      "import sys\n"
      "class Block:\n"
      "  def find_spec(self, name, path=None, target=None):\n"
      "    if name.split('.')[0] in {m for m, _ in NEEDED + NO_DEPS} | {'tensorflow_datasets'}:\n"
      "      raise ImportError('blocked ' + name)\n"
      "from benchmarks.device_check import NEEDED, NO_DEPS\n"
      "sys.meta_path.insert(0, Block())\n"
      "import ssljax\n"
      "from benchmarks import device_kernels\n"
      "print(sorted(device_kernels.SECTIONS))\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  assert "['attention', 'contrastive', 'correctness']" in run.stdout
