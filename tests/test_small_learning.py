"""The small-image recipes (configs/{simclr,byol,dino}_small.py) on an embedded task.

On photo_patches32 (ssljax.data.benchmarks; raw-pixel kNN 0.27, random-init small CNN with the
recipes' per-image input standardisation 0.34-0.39) each recipe beats its random-init backbone on
held-out kNN by 0.03, its loss goes down (DINO: see the test) and its embedding does not collapse
(conftest.learn_on_digits). SimCLR in a short budget, 150 steps at batch 64, at seeds 0 and 1.
BYOL and DINO need a longer one: their EMA target's momentum rises to 1 over total_steps, and in
150 steps neither learns (before the input standardisation: BYOL 0.321, DINO 0.331 vs 0.327 at
seed 0); here 300 steps at batch 128, seed 1 outside CI's time budget (SSLJAX_LEARN_EXTRA=1).
Measured 2026-12-06 on a 2-core machine with SSLJAX_LEARN_LOG (BYOL and DINO in a fresh-clone CI
run; SimCLR re-run on its own once the loss was logged every step), held-out kNN vs random init:
SimCLR 0.533 vs 0.379 at seed 0 and 0.510 vs 0.342 at seed 1 (at base_lr 4e-3, the recipe's rate
since 2026-12-07: 0.546 and 0.531, 115 s for the pair), BYOL 0.540 vs 0.379 and DINO 0.536 vs
0.379 at seed 0 (linear probes, 10 epochs: 0.600 and 0.596 vs 0.561), at 600 steps; CI runs them at 300
(2026-12-06, seed 0, both sharing the 2 cores with the other: BYOL 0.472, DINO 0.496 vs 0.379, in
218 s and 410 s where 600 steps took 657 s and 809 s; seed 1, the extra runs: 0.475 and 0.512 vs
0.342, 327 s for the pair). DINO's recipe runs at base_lr 3e-3 since (was 5e-3): at 300 steps,
seed 0, 0.496 again (fresh clone, alone on the 2 cores, 319 s); at 600 steps on the benchmark's
ssljax side 0.547 / 0.534 at seeds 0 / 1 (5e-3: 0.533 / 0.532). On
benchmarks/small_images.py's ssljax side BYOL at seed 1 reaches 0.535 (0.342); before the input
standardisation it was 0.349 vs 0.325, under the margin, then an expected failure.
"""
import pytest

from conftest import EXTRA_RUN, learn_on_digits, load_config

pytest.importorskip("skimage", reason="photo_patches32 reads scikit-image's photographs")

STEPS, BATCH, MARGIN = 150, 64, 0.03
EMA_STEPS, EMA_BATCH = 300, 128      # BYOL and DINO


@pytest.fixture(scope="module")
def photo_patches32(tmp_path_factory):
  from ssljax.data import benchmarks
  root = tmp_path_factory.mktemp("photo_patches32")
  benchmarks.write("photo_patches32", str(root))
  return str(root)


@pytest.mark.slow
@pytest.mark.parametrize("method, seed", [
    ("simclr", 0), ("simclr", 1),
    ("byol", 0), pytest.param("byol", 1, marks=EXTRA_RUN),
    ("dino", 0), pytest.param("dino", 1, marks=EXTRA_RUN)])
def test_small_recipe_learns_on_photo_patches(method, seed, photo_patches32, tmp_path):
  config = load_config(f"{method}_small")
  config.data.path = photo_patches32
  config.seed = seed
  steps, batch = (STEPS, BATCH) if method == "simclr" else (EMA_STEPS, EMA_BATCH)
  # The loss every step: learn_on_digits compares the mean of the first and last tenth of the logged
  # losses, and the recipe's log_every (50) leaves single batches there (SimCLR at seed 0 logged
  # 2.779, 2.609, 2.952 at steps 50, 100, 150 while its kNN rose from 0.379 to 0.523).
  config.update(total_steps=steps, batch_size=batch, eval_every=steps, checkpoint_every=steps,
                log_every=1)
  config.optimizer.warmup_steps = steps // 20
  config.eval.linear_epochs = 10
  # DINO's loss starts low (student and teacher are one network, both outputs nearly flat) and
  # rises as the teacher sharpens (seed 0: 5.60 over the first 60 steps, 5.98 over the last 60,
  # with kNN 0.327 -> 0.403): the kNN gain and the collapse check are its criterion.
  learn_on_digits(config, tmp_path, margin=MARGIN, loss_falls=method != "dino")
