"""notebooks/quickstart.ipynb runs top to bottom (nbclient, CPU, few steps); any failing cell fails."""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
  import nbclient
  import nbformat
  monkeypatch.setenv("SSLJAX_NOTEBOOK_STEPS", "30")
  monkeypatch.setenv("SSLJAX_REPO", ROOT)
  monkeypatch.setenv("SSLJAX_NOTEBOOK_WORKDIR", str(tmp_path / "run"))
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), as_version=4)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}})
  client.execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert '"knn_top1"' in outputs and "features: (8," in outputs
  assert os.path.exists(tmp_path / "run" / "export" / "model_card.json")
