"""Recipe blocks shared by the configs in this folder (not a config itself: it has no get_config).

A config file starts from one of the builders below and then sets only what its recipe changes:

  config = common.digits_vit("byol")          # the CPU quickstart: tiny ViT on the digits data
  config = common.imagenet("dino", "vit", batch_size=1024, epochs=100)
  config = common.cifar10("simclr")           # CIFAR-stem ResNet-18 on TFDS cifar10

and the block functions (`crop_only`, `byol_jitter`, `simclr_jitter`, `distill_digits`) set one
named group of keys on a config. Config files are loaded by path (`--config configs/x.py`) or by
shipped name (`--config x`, see ssljax/config_files.py), not imported as a package, so each one
loads this file with `common = config_lib.import_sibling(__file__)`, which finds it beside the
config file whatever the working directory, and leaves sys.path alone.
"""
from ssljax.config import base_config

IMAGENET_TRAIN = 1_281_167                   # ILSVRC2012 training images
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def imagenet_steps(batch_size: int) -> int:
  """Optimizer steps in one ImageNet-1k epoch at global batch `batch_size` (last batch dropped)."""
  return IMAGENET_TRAIN // batch_size


def digits_vit(method: str, total_steps: int = 300):
  """`method` on scikit-learn's bundled 8x8 digits (upsampled to 16 px), the CPU quickstart recipe.

  A 3-block ViT of width 64 with 4x4 patches (16 tokens + [CLS]), batch 128, AdamW at base_lr 2e-3
  (x batch/256) with weight decay 1e-4 and 20 warm-up steps, crops of scale 0.3-1 without flips
  (a flipped digit is another symbol), colour jitter on, blur 0.2, no grayscale (already grey).
  Evaluates and checkpoints every 100 steps.
  """
  config = base_config(method=method, model="vit")
  config.batch_size = 128
  config.total_steps = total_steps
  config.eval_every = 100
  config.checkpoint_every = 100
  config.model.update(patch_size=4, width=64, depth=3, num_heads=4, image_size=16)
  config.data.source = "digits"
  config.data.image_size = 16
  config.data.augment.update(crop_scale=(0.3, 1.0), hflip_prob=0.0, blur_prob=0.2,
                             grayscale_prob=0.0)
  config.optimizer.update(name="adamw", base_lr=2e-3, weight_decay=1e-4, warmup_steps=20)
  return config


def captioned_digits_vit(method: str, total_steps: int = 800):
  """Image-text `method` (clip, siglip, lit) on the embedded captioned digits, on a CPU.

  24 px canvases of the real 8x8 digits with a colour, a size and a position, and 2-3 templated
  captions each (ssljax.data.paired.captioned_digits). Image tower: the digits ViT (3 blocks,
  width 64, 4x4 patches: 36 tokens); text tower: 2 blocks of width 64, 16 tokens, EOS pooling;
  a joint embedding of 64. Light crops (scale 0.8-1) and no flips or colour changes: the
  captions name colours and sides. Batch 256, AdamW at base_lr 1e-3 (x batch/256), weight decay
  1e-4 (CLIP and SigLIP use 0.2 and 1e-4 at their scale).
  """
  config = base_config(method=method, model="vit")
  config.batch_size = 256
  config.total_steps = total_steps
  config.eval_every = 400
  config.checkpoint_every = 400
  config.model.update(patch_size=4, width=64, depth=3, num_heads=4, image_size=24)
  config.data.update(source="captioned_digits", synthetic_size=24, image_size=24)
  config.data.augment.update(crop_scale=(0.8, 1.0), hflip_prob=0.0, color_jitter_prob=0.0,
                             blur_prob=0.0, grayscale_prob=0.0)
  config.optimizer.update(name="adamw", base_lr=1e-3, weight_decay=1e-4, warmup_steps=30)
  config.eval.max_examples = 2000
  config[method].update(embed_dim=64, vocab_size=128)
  config[method].text.update(variant="tiny", max_len=16, pool="eos")
  return config


def webdataset_image_text(method: str, batch_size: int, total_steps: int, variant: str,
                          patch_size: int):
  """Image-text `method` (clip, siglip) on WebDataset shards at 224 px in bfloat16 with FSDP: the
  ViT `variant`/`patch_size` image tower, light crops (scale 0.9-1) without flips or colour
  changes, 16 grain workers, evaluation every 10,000 steps on 10,000 held-out pairs."""
  config = base_config(method=method, model="vit")
  config.batch_size = batch_size
  config.total_steps = total_steps
  config.eval_every = 10_000
  config.log_every = 100
  config.checkpoint_every = 2_000
  config.dtype = "bfloat16"
  config.param_sharding = "fsdp"
  config.model.update(variant=variant, patch_size=patch_size, image_size=224)
  config.data.update(source="webdataset", image_size=224, worker_count=16, prefetch=4)
  config.data.augment.update(crop_scale=(0.9, 1.0), hflip_prob=0.0, color_jitter_prob=0.0,
                             blur_prob=0.0, grayscale_prob=0.0)
  config.eval.update(batch_size=1024, max_examples=10_000, linear_epochs=10)
  return config


def crop_only(config):
  """Masked-image recipes (MAE, data2vec, I-JEPA): crops (+ flips) only, the masking is the
  augmentation; AdamW b2 0.95 and weight decay 0.05, as MAE (He et al. 2022)."""
  config.data.augment.update(color_jitter_prob=0.0, blur_prob=0.0, grayscale_prob=0.0)
  config.optimizer.update(b2=0.95, weight_decay=0.05)
  return config


def distill_digits(config):
  """DINO / iBOT / DINOv2 scaled to the digits: what `configs/dino_digits.py` measured to learn.

  A 1024-prototype head (hidden 256, bottleneck 64) with BatchNorm in its MLP, teacher temperature
  0.04 without warm-up, momentum 0.99, last layer frozen for the first epoch (11 steps), 2 global
  crops and no local crops; base_lr 5e-3, DINO's weight decay 0.04 and gradient clip 3.0. iBOT and
  DINOv2 also get a separate patch head at the same temperature.
  """
  block = config[config.method]
  block.update(out_dim=1024, hidden_dim=256, bottleneck_dim=64, use_bn_in_head=True,
               teacher_temp=0.04, warmup_teacher_temp=0.04, warmup_teacher_temp_steps=0,
               momentum=0.99, freeze_last_layer_steps=11, global_crops_scale=(0.4, 1.0),
               local_crops=0, local_size=8, local_crops_scale=(0.15, 0.4))
  if "patch_out_dim" in block:
    block.update(shared_head=False, patch_out_dim=1024, teacher_patch_temp=0.04,
                 warmup_teacher_patch_temp=0.04)
  config.optimizer.update(base_lr=5e-3, weight_decay=0.04, grad_clip=3.0)
  return config


def imagenet(method: str, model: str, batch_size: int, epochs: int = 0, tfds: bool = False):
  """`method` on ImageNet-1k at 224 px in bfloat16: an image folder (train/ and val/ class
  sub-folders at --config.data.path) or, with `tfds`, TFDS imagenet2012 in ArrayRecord format.

  With `epochs`, total_steps is that many epochs and the model is evaluated every 10 epochs. The
  TFDS recipes use 32 grain workers per host (16 for a folder), keep 3 checkpoints and train the
  linear probe for 30 epochs at evaluation batch 1024.
  """
  config = base_config(method=method, model=model)
  config.batch_size = batch_size
  if epochs:
    config.total_steps = epochs * imagenet_steps(batch_size)
    config.eval_every = 10 * imagenet_steps(batch_size)
  config.log_every = 100
  config.checkpoint_every = 2_000
  config.dtype = "bfloat16"
  config.data.image_size = 224
  config.data.augment.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
  if tfds:
    config.data.update(source="tfds", tfds_name="imagenet2012", eval_split="validation",
                       worker_count=32, prefetch=4)
    config.keep_checkpoints = 3
    config.eval.update(linear_epochs=30, batch_size=1024)
  else:
    config.data.update(source="image_folder", worker_count=16)
  if model == "resnet":
    config.model.depth = 50
  return config


def masked_vit_imagenet(method: str, variant: str, batch_size: int, total_steps: int):
  """A masked-image ViT (MAE, data2vec, I-JEPA, LeJEPA) on an ImageNet folder: FSDP params, 8 grain
  workers, evaluation every 10,000 steps and a checkpoint every 5,000."""
  config = imagenet(method, "vit", batch_size)
  config.total_steps = total_steps
  config.eval_every = 10_000
  config.checkpoint_every = 5_000
  config.param_sharding = "fsdp"
  config.model.variant = variant
  config.data.worker_count = 8
  return config


def byol_jitter(config, blur_prob: float = 0.55, local_blur_prob: float = -1.0):
  """BYOL's augmentation (Grill et al. 2020, table 6): jitter 0.4 / 0.4 / 0.2 / 0.1 with p = 0.8,
  grayscale 0.2, and asymmetric views: blur 1.0 on view 1 and 0.1 on view 2, solarisation 0.0
  and 0.2 (`data.global_view_*_prob`). `blur_prob` is what other crops get (DINO's local crops:
  `local_blur_prob=0.5`, their reference's value)."""
  config.data.augment.update(color_jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2,
                             hue=0.1, grayscale_prob=0.2, blur_prob=blur_prob, solarize_prob=0.0)
  config.data.update(global_view_blur_prob=(1.0, 0.1), global_view_solarize_prob=(0.0, 0.2),
                     local_view_blur_prob=local_blur_prob)
  return config


def simclr_jitter(config):
  """SimCLR's colour distortion of strength 1.0 (Chen et al. 2020, appendix A): jitter 0.8 / 0.8 /
  0.8 / 0.2 with p = 0.8, grayscale 0.2, blur 0.5."""
  config.data.augment.update(color_jitter_prob=0.8, brightness=0.8, contrast=0.8, saturation=0.8,
                             hue=0.2, grayscale_prob=0.2, blur_prob=0.5)
  return config


def cifar10(method: str, batch_size: int, total_steps: int):
  """`method` with a CIFAR-stem ResNet-18 on TFDS cifar10 (ArrayRecord; --config.data.path=DATA_DIR
  or after `tfds build cifar10 --file_format=array_record`): 32 px, the test split for evaluation,
  no blur (SimCLR drops it at 32 px), evaluated every 5,000 steps."""
  config = base_config(method=method, model="resnet")
  config.batch_size = batch_size
  config.total_steps = total_steps
  config.log_every = 100
  config.eval_every = 5_000
  config.checkpoint_every = 2_000
  config.model.update(depth=18, cifar_stem=True)
  config.data.update(source="tfds", tfds_name="cifar10", eval_split="test", image_size=32,
                     worker_count=8)
  config.data.augment.update(crop_scale=(0.2, 1.0), blur_prob=0.0, mean=CIFAR10_MEAN,
                             std=CIFAR10_STD)
  return config


SMALL_BACKBONES = ("small_cnn", "resnet18", "vit")


def small_images(method: str, backbone: str = "small_cnn", image_size: int = 32,
                 total_steps: int = 1000):
  """`method` on your own image folder of small images (32-64 px; `--config.data.path=DIR`, with
  train/ and val/ class sub-folders), measured on the embedded tasks of ssljax.data.benchmarks.

  Backbones (`backbone`): 'small_cnn' (ssljax.models.small_cnn: 4 conv stages 32-256 wide, 0.39 M
  parameters; the default, fastest on a CPU; each image standardised to mean 0 and standard
  deviation 1 at its input, `model.input_norm='per_image'`, which the other two do not have),
  'resnet18' (ResNet-18 with the CIFAR stem: 3x3 stride-1 conv, no max-pool) or 'vit' (width 192,
  depth 6, 3 heads, 4x4 patches at 32 px and 8x8 at 64 px: 64 tokens either way, mean-pooled tokens,
  learned positions). Batch 256, AdamW at base_lr 2e-3 (x batch/256), weight decay 1e-4 (0.05 for
  the ViT), 5% warm-up; crops of scale 0.2-1, flips, SimCLR's colour distortion of strength 1
  (jitter 0.8 / 0.8 / 0.8 / 0.2 with p 0.8, greyscale 0.2: colour is the shortcut on small images),
  no blur (SimCLR drops it at 32 px).
  Evaluates and checkpoints every 250 steps.

  The per-image input standardisation keeps an image's brightness from dominating the small
  CNN's features (the runs: docs/ablations.md#small_images-common).
  """
  if backbone not in SMALL_BACKBONES:
    raise ValueError(f"backbone={backbone!r}; expected one of {SMALL_BACKBONES}")
  model = {"small_cnn": "small_cnn", "resnet18": "resnet", "vit": "vit"}[backbone]
  config = base_config(method=method, model=model)
  config.batch_size = 256
  config.total_steps = total_steps
  config.log_every = 50
  config.eval_every = 250
  config.checkpoint_every = 250
  if backbone == "resnet18":
    config.model.update(depth=18, cifar_stem=True)
  elif backbone == "vit":
    config.model.update(patch_size=4 if image_size <= 48 else 8, width=192, depth=6, num_heads=3,
                        image_size=image_size, pool="gap", posemb="learned")
  if backbone == "small_cnn":
    config.model.input_norm = "per_image"
  config.data.update(source="image_folder", image_size=image_size)
  config.data.augment.update(crop_scale=(0.2, 1.0), hflip_prob=0.5, color_jitter_prob=0.8,
                             brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
                             grayscale_prob=0.2, blur_prob=0.0)
  config.optimizer.update(name="adamw", base_lr=2e-3, weight_decay=1e-4,
                          warmup_steps=max(1, total_steps // 20))
  if backbone == "vit":
    config.optimizer.weight_decay = 0.05
  return config


def small_args(arg) -> tuple[str, int, bool]:
  """(backbone, image_size, glyphs) from a `_small` config's argument: '' | 'resnet18' | 'vit' |
  '64' | 'glyphs' | 'vit,64,glyphs' ... (`--config configs/simclr_small.py:resnet18,64`); see
  `glyph_views` for 'glyphs'."""
  backbone, size, glyphs = "small_cnn", 32, False
  for part in str(arg or "").replace(" ", "").split(","):
    if not part:
      continue
    if part.isdigit():
      size = int(part)
    elif part in SMALL_BACKBONES:
      backbone = part
    elif part == "glyphs":
      glyphs = True
    else:
      raise ValueError(f"config argument {part!r}; expected an image size, 'glyphs' or one of "
                       f"{SMALL_BACKBONES}")
  return backbone, size, glyphs


GLYPH_CROP_SCALE = (0.4, 1.0)


def glyph_views(config):
  """The `_small` recipes' views for digits, letters and symbols (`:glyphs`): no flips (a mirrored
  glyph is another symbol or none) and crops of scale 0.4-1 instead of 0.2-1 (DINO: its global
  crops), so that both views hold most of the glyph.

  With the default views BYOL and DINO fall below their random init on clutter_digits32: their
  features follow how much of the image is stroke. The runs: docs/ablations.md#glyph_views-common;
  side by side with lightly: BENCHMARKS.md "Small images vs lightly", rows `byol:glyphs` and
  `dino:glyphs`.
  """
  config.data.augment.update(hflip_prob=0.0, crop_scale=GLYPH_CROP_SCALE)
  if config.method == "dino":
    config.dino.global_crops_scale = GLYPH_CROP_SCALE
  return config
