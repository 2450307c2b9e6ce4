"""Image-text methods learn on the embedded captioned digits (slow: the shipped configs, trained).

CLIP and SigLIP must reach held-out zero-shot top-1 at least 0.3 above their random-init towers
(chance is 0.1) and image->text R@1 well above them (measured, seed 0: CLIP 0.697 vs 0.097,
SigLIP 0.492 vs 0.097; SigLIP seed 1, 2026-12-05, an extra run: zero-shot 0.506 vs 0.122,
i2t R@1 0.542 vs 0.003, t2i R@1 0.678, 1,617 s on 2 cores at load average 7-22). LiT on a
DINO tower pretrained on the same images (benchmarks/image_text_digits.py `dino_tower`) must
come within 5 points of that tower's linear probe (measured 2026-12-05, seed 0: zero-shot 0.3417,
random text tower 0.0889, the tower's probe 0.375; 359 s with the tower at load average 3-15;
this test: 0.344, 600 s at load average 5-11). The
held-out split has held-out digit images and (digit, colour) pairs never seen in training.
"""
import os

import pytest

from conftest import EXTRA_RUN, load_config

pytestmark = pytest.mark.slow


def _train(config, workdir):
  from ssljax import train
  config.progress_bar = False
  config.eval_every = config.total_steps   # one evaluation, at the end
  return train.train_and_evaluate(config, workdir)


@pytest.mark.parametrize("name,seed", [("clip", 0), pytest.param("clip", 1, marks=EXTRA_RUN),
                                       ("siglip", 0), pytest.param("siglip", 1, marks=EXTRA_RUN)])
def test_learns_zero_shot_and_retrieval(name, seed, tmp_path):
  c = load_config(f"{name}_digits")
  c.seed = seed
  r = _train(c, str(tmp_path))
  print(f"{name} seed {seed}: zero-shot {r['zeroshot_top1']:.3f} (init "
        f"{r['zeroshot_top1_random_init']:.3f}), i2t R@1 {r['i2t_r1']:.3f} (init "
        f"{r['i2t_r1_random_init']:.3f}), t2i R@1 {r['t2i_r1']:.3f}")
  assert r["zeroshot_top1"] >= r["zeroshot_top1_random_init"] + 0.3, r
  assert r["i2t_r1"] >= r["i2t_r1_random_init"] + 0.25, r
  assert r["t2i_r1"] >= r["t2i_r1_random_init"] + 0.25, r
  assert not r.get("collapsed", False)


def test_lit_reaches_its_towers_linear_probe(tmp_path):
  from benchmarks import image_text_digits
  tower = image_text_digits.dino_tower(str(tmp_path / "tower"))
  c = load_config("lit_digits")
  c.lit.image_tower = str(tmp_path / "tower")
  r = _train(c, str(tmp_path / "lit"))
  print(f"lit: zero-shot {r['zeroshot_top1']:.3f} (random text tower "
        f"{r['zeroshot_top1_random_init']:.3f}); the tower's linear probe {tower['linear_top1']:.3f}")
  assert r["zeroshot_top1"] >= r["zeroshot_top1_random_init"] + 0.15, r
  assert r["i2t_r1"] >= r["i2t_r1_random_init"] + 0.25, r
  assert os.path.exists(tmp_path / "lit" / "tokenizer.model")
  # The criterion: zero-shot within a few (5) points of the locked tower's own linear probe.
  assert r["zeroshot_top1"] >= tower["linear_top1"] - 0.05, (r, tower["linear_top1"])
