"""The quickstart recipe pointed at an image folder of another size warns in one line, naming the
config to start from (ssljax.recipes, called by the trainer)."""
import os

import numpy as np
from PIL import Image

from conftest import load_config


def test_trainer_warns_when_a_recipe_meets_other_image_sizes(tmp_path, capsys):
  from ssljax import train
  rng = np.random.default_rng(0)
  for split in ("train", "val"):
    for cls in ("a", "b"):
      os.makedirs(tmp_path / split / cls)
      for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(
            tmp_path / split / cls / f"{i}.png")
  c = load_config("simclr_digits")
  c.data.update(source="image_folder", path=str(tmp_path), image_size=32)
  c.update(batch_size=16, progress_bar=False)
  c.eval.update(max_examples=16, random_init=False)
  train.Trainer(c, str(tmp_path / "run"))
  lines = [ln for ln in capsys.readouterr().out.splitlines() if "recipe was tuned" in ln]
  assert len(lines) == 1 and "configs/simclr_small.py" in lines[0], lines
  capsys.readouterr()
  train.Trainer(load_config("simclr_digits"), str(tmp_path / "digits"))   # its own data: quiet
  assert "recipe was tuned" not in capsys.readouterr().out
