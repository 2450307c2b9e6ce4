"""The small-image recipes (configs/{simclr,byol,dino}_small.py) on an embedded task.

On photo_patches32 (ssljax.data.benchmarks; raw-pixel kNN 0.27, random-init small CNN 0.33), with
a short budget (150 steps at batch 64), SimCLR beats its random-init backbone on held-out kNN by 0.03
at seeds 0 and 1 (measured 2026-12-05 with the projector's output BatchNorm: 0.430 vs 0.327 at seed
0, 0.401 vs 0.325 at seed 1; 346 s and 278 s on a 2-core machine at load average 10-20), its loss
goes down and its embedding does not collapse
(conftest.learn_on_digits). BYOL and DINO do not yet learn in this budget (xfail, with the numbers).
"""
import pytest

from conftest import EXTRA_RUN, learn_on_digits, load_config

pytest.importorskip("skimage", reason="photo_patches32 reads scikit-image's photographs")

STEPS, BATCH, MARGIN = 150, 64, 0.03

NOT_YET = pytest.mark.xfail(reason=(
    "measured 2026-12-04 at seed 0: held-out kNN after 150 steps at batch 64 byol 0.321, dino 0.331 "
    "(random init 0.327; after 100 steps at batch 128: byol 0.311, dino 0.309, also with base_lr 2e-2 "
    "(byol 0.246) or teacher temperature 0.07 (dino 0.330)), where simclr reaches 0.418; measured "
    "2026-12-05 at seed 0, 200 steps at batch 128 (benchmarks.small_images's ssljax side), a faster "
    "EMA does not fix it: byol tau_base 0.9 0.280 / 0.264 after 50 / 100 steps, dino momentum 0.9 "
    "0.317 / 0.307; byol at base_lr 1e-3 stays at random init: 0.322 / 0.333 / 0.333 after "
    "50 / 100 / 150 steps"), strict=False)


@pytest.fixture(scope="module")
def photo_patches32(tmp_path_factory):
  from ssljax.data import benchmarks
  root = tmp_path_factory.mktemp("photo_patches32")
  benchmarks.write("photo_patches32", str(root))
  return str(root)


@pytest.mark.slow
@pytest.mark.parametrize("method, seed", [
    ("simclr", 0), ("simclr", 1),
    pytest.param("byol", 0, marks=[NOT_YET, EXTRA_RUN]),
    pytest.param("dino", 0, marks=[NOT_YET, EXTRA_RUN])])
def test_small_recipe_learns_on_photo_patches(method, seed, photo_patches32, tmp_path):
  config = load_config(f"{method}_small")
  config.data.path = photo_patches32
  config.seed = seed
  config.update(total_steps=STEPS, batch_size=BATCH, eval_every=STEPS, checkpoint_every=STEPS)
  config.optimizer.warmup_steps = STEPS // 20
  config.eval.linear_epochs = 10
  learn_on_digits(config, tmp_path, margin=MARGIN)
