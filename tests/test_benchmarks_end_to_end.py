"""benchmarks/end_to_end_peer.py: what each side is given, the table, and (with .venv-peer/) a run.

The tests marked `peer` skip when .venv-peer/ (bash benchmarks/peer_env.sh) is absent.
"""
import json
import os
import subprocess

import pytest

from benchmarks import end_to_end_peer as E

peer = pytest.mark.skipif(not os.path.exists(E.PEER_PYTHON),
                          reason="no .venv-peer/: run `bash benchmarks/peer_env.sh`")


def test_simclr_sides_get_the_default_augmentation_and_placements(tmp_path):
  from ssljax.data.augment import default_augment_config
  host = E.case_config("simclr_r18", 32, 32, str(tmp_path), "host")
  device = E.case_config("simclr_r18", 32, 32, str(tmp_path), "device")
  assert (host.data.augment_on, device.data.augment_on) == ("host", "device")
  assert host.data.worker_count == 0 and host.model.cifar_stem
  assert not E.case_config("simclr_r18", 224, 32, str(tmp_path), "host").model.cifar_stem
  aug = E.peer_aug(host)
  ref = default_augment_config()
  for key in ref.keys():
    want = list(ref[key]) if isinstance(ref[key], tuple) else ref[key]
    assert aug[key] == pytest.approx(want), key
  json.dumps(aug)   # what goes over the command line


def test_dino_sides_get_the_recipes_asymmetric_views_and_local_crops(tmp_path):
  c = E.case_config("dino_vit_tiny", 32, 32, str(tmp_path), "host")
  aug = E.peer_aug(c)
  assert aug["global_view_blur_prob"] == [1.0, 0.1]
  assert aug["global_view_solarize_prob"] == [0.0, 0.2]
  assert aug["local_view_blur_prob"] == 0.5
  assert (aug["local_crops"], aug["local_size"]) == (E.LOCAL_CROPS, E.LOCAL_SIZE)
  assert aug["global_crops_scale"] == [0.4, 1.0] and aug["local_crops_scale"] == [0.05, 0.4]
  assert (aug["brightness"], aug["contrast"], aug["saturation"], aug["hue"]) == (0.4, 0.4, 0.2, 0.1)
  json.dumps(aug)


def test_table_ratios_are_medians_over_lightly():
  rows = [{"label": "r", "batch": 32, "rates": {"ssljax host": [10.0, 30.0, 20.0],
                                                 "ssljax device": [40.0, 44.0, 42.0],
                                                 "lightly": [20.0, 21.0, 19.0],
                                                 "ssljax step": [50.0, 60.0, 55.0],
                                                 "lightly step": [25.0, 22.0, 24.0]}}]
  table = E.format_table(rows)
  line = table.splitlines()[-1]
  assert "| 20.0 | 42.0 | 20.0 | 1.00x | 2.10x | 55.0 / 24.0 (2.29x) | 3 |" in line, line
  chunks = E.format_chunks(rows)
  assert "ssljax host 10.0, 30.0, 20.0" in chunks and "lightly step 25.0, 22.0, 24.0" in chunks


@peer
@pytest.mark.bench
def test_lightly_transforms_make_the_recipes_views(tmp_path):
  """lightly's DINOTransform / SimCLRTransform built from the recipe's values give its views."""
  c = E.case_config("dino_vit_tiny", 32, 32, str(tmp_path), "host")
  s = E.case_config("simclr_r18", 32, 32, str(tmp_path), "host")
  code = (
      "import json, sys; from PIL import Image; "
      "from benchmarks import _lightly_e2e_worker as W; "
      "img = Image.new('RGB', (40, 40), (120, 30, 200)); "
      f"d = W.dino_transform(32, json.loads({json.dumps(json.dumps(E.peer_aug(c)))})); "
      f"s = W.simclr_transform(32, json.loads({json.dumps(json.dumps(E.peer_aug(s)))})); "
      "print(json.dumps([[list(v.shape) for v in d(img)], [list(v.shape) for v in s(img)]]))")
  out = subprocess.run([E.PEER_PYTHON, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
  dino, simclr = json.loads(out.stdout.strip().splitlines()[-1])
  assert dino == [[3, 32, 32]] * 2 + [[3, E.LOCAL_SIZE, E.LOCAL_SIZE]] * E.LOCAL_CROPS
  assert simclr == [[3, 32, 32]] * 2


@peer
@pytest.mark.bench
def test_quick_run_times_every_side_end_to_end_and_the_steps_alone():
  rows = E.main(["--quick", "--cases", "simclr_r18_32"])
  assert [r["case"] for r in rows] == ["simclr_r18_32"]
  for side in E.SIDES + E.STEP_SIDES:
    assert len(rows[0]["rates"][side]) == 1 and rows[0]["rates"][side][0] > 0, side
