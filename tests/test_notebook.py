"""notebooks/quickstart.ipynb: its install cell's decisions (pip stubbed), and the whole notebook run top
to bottom from a directory outside the checkout, as Colab runs it from /content (nbclient, CPU, few
steps); any failing cell fails."""
import glob
import importlib.util
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def _code_cells():
  return [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]


def test_notebook_names_no_checkout_paths():
  """On Colab there is no checkout around the notebook: configs come from the installed package."""
  cells = _code_cells()
  assert "REPO_URL = " in cells[0]
  for source in cells:
    assert "../" not in source and "configs/" not in source
  assert any('import_module("ssljax.configs.simclr_digits")' in s for s in cells)


def _run_install_cell(monkeypatch, devices, repo_url="https://example.org/x/ssljax.git"):
  """Executes the install cell as if ssljax were not installed; returns the pip commands it ran."""
  calls = []
  real_find_spec, real_glob = importlib.util.find_spec, glob.glob
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "ssljax" else real_find_spec(name, *a))
  monkeypatch.setattr(glob, "glob", lambda pattern: [p for p in devices if
                                                     p.startswith(pattern.split("*")[0].split("[")[0])])
  monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
  monkeypatch.setenv("SSLJAX_REPO_URL", repo_url)
  exec(_code_cells()[0], {})   # pylint: disable=exec-used
  return calls


def test_install_cell_on_a_cpu_runtime_installs_the_pins(monkeypatch):
  calls = _run_install_cell(monkeypatch, devices=[])
  assert calls == [[sys.executable, "-m", "pip", "install", "-q", "git+https://example.org/x/ssljax.git"]]


@pytest.mark.parametrize("device", ["/dev/nvidia0", "/dev/accel0", "/dev/vfio/0"])
def test_install_cell_on_an_accelerator_runtime_keeps_its_jax(monkeypatch, device):
  from importlib import metadata
  calls = _run_install_cell(monkeypatch, devices=[device])
  assert len(calls) == 2
  assert calls[0] == [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                      "git+https://example.org/x/ssljax.git"]
  deps = calls[1][5:]
  assert f"jax=={metadata.version('jax')}" in deps and f"jaxlib=={metadata.version('jaxlib')}" in deps
  assert "flax==0.12.8" in deps and "grain==0.2.18" in deps   # ssljax's other pins
  assert not [d for d in deps if d.startswith(("jax[", "jax>", "jax<", "libtpu", "pytest"))]


def test_install_cell_takes_a_local_path_and_rejects_the_placeholder(monkeypatch, tmp_path):
  calls = _run_install_cell(monkeypatch, devices=[], repo_url=str(tmp_path))
  assert calls == [[sys.executable, "-m", "pip", "install", "-q", str(tmp_path)]]
  with pytest.raises(ValueError, match="placeholder"):
    _run_install_cell(monkeypatch, devices=[], repo_url="https://github.com/OWNER/ssljax")


@pytest.mark.slow
def test_quickstart_notebook_executes_outside_the_checkout(tmp_path, monkeypatch):
  """A copy of the notebook in an empty directory, its kernel started there; ssljax is already installed
  (the install cell skips), so the configs can only come from the installed package."""
  import nbclient
  content = tmp_path / "content"
  content.mkdir()
  shutil.copy(NOTEBOOK, content / "quickstart.ipynb")
  monkeypatch.setenv("SSLJAX_NOTEBOOK_STEPS", "30")
  monkeypatch.setenv("SSLJAX_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  monkeypatch.delenv("PYTHONPATH", raising=False)
  monkeypatch.delenv("SSLJAX_REPO_URL", raising=False)
  nb = nbformat.read(str(content / "quickstart.ipynb"), as_version=4)
  nb.cells.insert(1, nbformat.v4.new_code_cell("import os; print('cwd:', os.getcwd())"))
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(content)}})
  client.execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert f"cwd: {content}" in outputs
  assert "pip install" not in outputs   # ssljax is installed: the install cell did nothing
  assert '"knn_top1"' in outputs and "features: (8," in outputs
  assert os.path.exists(tmp_path / "run" / "export" / "model_card.json")
