"""benchmarks/learning_seeds.py: which seeds pass, and the logging hook in tests/conftest.py."""
import json
import os
import subprocess
import sys

import pytest

from benchmarks import learning_seeds

pytestmark = pytest.mark.bench   # peer harness: `make test-bench`

ROW = dict(margin=0.05, loss_first=2.0, loss_last=1.0, collapsed=False, knn_top1=0.85,
           knn_top1_random_init=0.76, measured="2026-11-24")


def test_passed_mirrors_the_learning_assertion():
  assert learning_seeds.passed(ROW)
  assert not learning_seeds.passed(dict(ROW, knn_top1=0.80))          # gain 0.04 < margin 0.05
  assert not learning_seeds.passed(dict(ROW, loss_last=2.5))          # loss went up
  assert not learning_seeds.passed(dict(ROW, collapsed=True))


def test_table_marks_failing_seeds_and_counts_passes():
  store = {"tests/test_a.py::test_learns": {"0": ROW, "1": dict(ROW, knn_top1=0.75)},
           "tests/test_b.py::test_learns": {"0": dict(ROW, margin=0.02)}}
  text = learning_seeds.table(store, [0, 1])
  lines = [l for l in text.splitlines() if l.startswith("| test_")]
  assert lines[0].split(" | ")[1:5] == ["0.05", "+0.090", "-0.010 (fails)", "1/2"]
  assert lines[1].split(" | ")[1:5] == ["0.02", "+0.090", "-", "1/1"]


def _run_probe(tmp_path, body: str, **env):
  """Runs a one-test file `body` (importing tests/conftest.py's helpers) in a fresh pytest."""
  test = tmp_path / "test_probe.py"
  test.write_text("from conftest import learn_on_digits, make_tiny_config\n"
                  "def test_learns(tmp_path):\n" + body)
  return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(test),
                         "--rootdir", str(tmp_path), "-c", os.devnull],
                        env=dict(os.environ, PYTHONPATH=os.path.dirname(__file__), **env),
                        capture_output=True, text=True, check=False, timeout=600)


def test_conftest_applies_seed_and_overrides_and_logs(tmp_path):
  """SSLJAX_LEARN_SEED / _OVERRIDES reach the config; _LOG gets the row even when the test fails."""
  log = tmp_path / "rows.jsonl"
  proc = _run_probe(tmp_path,
                    "  c = make_tiny_config()\n"
                    "  c.total_steps = 2\n"
                    "  c.eval_every = 2\n"
                    "  learn_on_digits(c, tmp_path, margin=5.0)\n",   # a margin no run can meet
                    SSLJAX_LEARN_SEED="3", SSLJAX_LEARN_LOG=str(log),
                    SSLJAX_LEARN_OVERRIDES="optimizer.weight_decay=0.25; simclr.temperature=0.3")
  assert proc.returncode == 1, proc.stdout[-2000:]
  (row,) = [json.loads(line) for line in log.read_text().splitlines()]
  assert row["seed"] == 3 and row["margin"] == 5.0
  assert row["overrides"] == "optimizer.weight_decay=0.25; simclr.temperature=0.3"
  assert not learning_seeds.passed(row)


def test_conftest_rejects_an_unknown_override(tmp_path):
  proc = _run_probe(tmp_path, "  learn_on_digits(make_tiny_config(), tmp_path, margin=0.0)\n",
                    SSLJAX_LEARN_OVERRIDES="optimizer.weight_decy=0.25")
  assert proc.returncode == 1
  assert "'optimizer.weight_decy' is not a config field" in proc.stdout


def test_junit_verdicts_name_nodes_as_the_log_does(tmp_path):
  xml = tmp_path / "j.xml"
  xml.write_text('<testsuites><testsuite>'
                 '<testcase classname="tests.test_a" name="test_learns"/>'
                 '<testcase classname="tests.test_b" name="test_learns"><failure/></testcase>'
                 '<testcase classname="tests.test_c" name="test_learns"><skipped/></testcase>'
                 '</testsuite></testsuites>')
  assert learning_seeds.junit_verdicts(str(xml)) == {
      "tests/test_a.py::test_learns": True, "tests/test_b.py::test_learns": False,
      "tests/test_c.py::test_learns": False}
  assert not learning_seeds.passed(dict(ROW, passed=False))   # pytest's verdict wins
