"""The small-image recipes (configs/{simclr,byol,dino}_small.py) on an embedded task.

On photo_patches32 (ssljax.data.benchmarks; raw-pixel kNN 0.27, random-init small CNN with the
recipes' per-image input standardisation 0.34-0.39) each recipe beats its random-init backbone on
held-out kNN by 0.03, its loss goes down (DINO: see the test) and its embedding does not collapse
(conftest.learn_on_digits). SimCLR in a short budget, 150 steps at batch 64, at seeds 0 and 1.
BYOL and DINO need a longer one: their EMA target's momentum rises to 1 over total_steps, and in
150 steps neither learns (before the input standardisation: BYOL 0.321, DINO 0.331 vs 0.327 at
seed 0); here 200 steps at batch 128, at seeds 0 and 1.
Measured 2026-12-07 on a 2-core machine with SSLJAX_LEARN_LOG and CI's slow-step flags (one
device, ssljax's XLA:CPU flags), held-out kNN vs random init 0.379 / 0.342 at seeds 0 / 1:
SimCLR 0.533 / 0.530 (77-97 s each), BYOL 0.430 / 0.451 and DINO 0.442 / 0.470 (203-221 s each,
the four in 433 s on two workers). At 300 steps (CI's budget until 2026-12-07, seed 1 then an
opt-in extra run) BYOL 0.485 / 0.483 and DINO 0.493 / 0.510 (291-314 s each); at 600 steps BYOL
0.540 and DINO 0.536 at seed 0 (linear probes, 10 epochs: 0.600 and 0.596 vs 0.561). The DINO
recipe's rate is 3e-3 (was 5e-3: on benchmarks/small_images.py's ssljax side, 600 steps, 0.547 /
0.534 at seeds 0 / 1 against 0.533 / 0.532). Before the input standardisation BYOL at seed 1
reached 0.349 vs 0.325, under the margin.
"""
import pytest

from conftest import learn_on_digits, load_config

pytest.importorskip("skimage", reason="photo_patches32 reads scikit-image's photographs")

STEPS, BATCH, MARGIN = 150, 64, 0.03
EMA_STEPS, EMA_BATCH = 200, 128      # BYOL and DINO


@pytest.fixture(scope="module")
def photo_patches32(tmp_path_factory):
  from ssljax.data import benchmarks
  root = tmp_path_factory.mktemp("photo_patches32")
  benchmarks.write("photo_patches32", str(root))
  return str(root)


@pytest.mark.slow
@pytest.mark.parametrize("method, seed", [
    ("simclr", 0), ("simclr", 1),
    ("byol", 0), ("byol", 1), ("dino", 0), ("dino", 1)])
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
