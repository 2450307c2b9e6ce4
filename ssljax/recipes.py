"""Which image sizes a config's recipe was tuned for, and a one-line warning when a run leaves them.

  warning = check_recipe(config)      # None, or one line naming the config to use instead

A recipe's backbone says which size class it was tuned for (no extra config key is needed):

| size class | backbone in the config | crop side (`data.image_size`) | stored images |
|---|---|---|---|
| digits | ViT with `model.image_size` <= 24 (configs/*_digits.py) | 8-24 px | 8-24 px |
| small | `small_cnn`, CIFAR-stem ResNet, ViT with `model.image_size` 25-96 (configs/*_small.py) | 24-96 px | 16-160 px |
| imagenet | ResNet without the CIFAR stem, ViT with `model.image_size` > 96 (configs/*_imagenet.py) | 112-512 px | >= 96 px |

`check_recipe` compares the crop side and, for an image folder, the side of its first training
image with the recipe's class, and when either is outside it returns one line that says so and
names the shipped config for the method at that size (configs/<method>_small.py for 25-96 px,
configs/<method>_*_imagenet.py above, configs/<method>_digits.py below).
"""
from __future__ import annotations

import glob
import os
from typing import Any

from ssljax.data import sources

# size class -> (crop side lo, hi), (stored image side lo, hi)
SIZE_CLASSES = {
    "digits": ((8, 24), (8, 24)),
    "small": ((24, 96), (16, 160)),
    "imagenet": ((112, 512), (96, 1_000_000)),
}


def size_class(config) -> str:
  """'digits' | 'small' | 'imagenet': the image sizes the config's backbone settings were tuned for."""
  model = config.model
  if model.name == "vit":
    ref = int(model.get("image_size", 224))
    return "digits" if ref <= 24 else "small" if ref <= 96 else "imagenet"
  if model.name == "resnet" and not model.get("cifar_stem", False):
    return "imagenet"
  return "small"


def class_of_size(side: int) -> str:
  """The size class whose crop range holds `side` px (the nearest one at the edges)."""
  if side <= 24:
    return "digits"
  return "small" if side <= 96 else "imagenet"


def stored_image_side(data) -> int | None:
  """The shorter side of the first training image of an image folder (None for other sources
  or when the folder cannot be read: validation reports that)."""
  if data.source != "image_folder" or not data.path:
    return None
  files = sorted(f for f in glob.glob(os.path.join(data.path, data.train_split, "*", "*"))
                 if f.lower().endswith(sources.IMAGE_EXTENSIONS))
  if not files:
    return None
  try:
    from PIL import Image
    with Image.open(files[0]) as im:
      return int(min(im.size))
  except Exception:  # an unreadable file: the data pipeline reports it with its path
    return None


def suggested_config(method: str, size: str, config_dir: str | None = None) -> str:
  """The shipped config for `method` in size class `size` ('configs/simclr_small.py'), or the
  small / digits recipe of SimCLR when the method has none. `config_dir`: the shipped configs'
  folder (ssljax.config_files.shipped_dir(), also for an installed package) unless given."""
  if config_dir is None:
    from ssljax import config_files
    config_dir = config_files.shipped_dir()
  pattern = {"digits": f"{method}_digits.py", "small": f"{method}_small.py",
             "imagenet": f"{method}_*imagenet.py"}[size]
  found = sorted(glob.glob(os.path.join(config_dir, pattern)))
  if found:
    return "configs/" + os.path.basename(found[0])
  fallback = {"digits": "simclr_digits.py", "small": "simclr_small.py",
              "imagenet": "simclr_resnet50_imagenet.py"}[size]
  return "configs/" + fallback


def check_recipe(config: Any) -> str | None:
  """One line when the run's image sizes are outside what the config's recipe was tuned for.

  Args:
    config: a resolved ssljax config (after overrides).

  Returns:
    None when `data.image_size` and (for an image folder) the stored images' side are inside the
    recipe's size class (`SIZE_CLASSES`), else one line such as "warning: this recipe was tuned
    for 8-24 px images (...); data.image_size=32 and the images in DIR are 32 px: start from
    configs/simclr_small.py instead".
  """
  tuned = size_class(config)
  (crop_lo, crop_hi), (img_lo, img_hi) = SIZE_CLASSES[tuned]
  crop = int(config.data.image_size)
  stored = stored_image_side(config.data)
  crop_ok = crop_lo <= crop <= crop_hi
  stored_ok = stored is None or img_lo <= stored <= img_hi
  if crop_ok and stored_ok:
    return None
  # The class the data belongs to: the stored images' when they are off, else the crop side's.
  target = class_of_size(stored if not stored_ok else crop)
  if target == tuned:
    target = class_of_size(crop)
  if target == tuned:
    return None
  what = {"digits": "8-24 px images (the 8x8 digits upsampled to 16 px)",
          "small": "24-96 px images", "imagenet": "112 px and larger images"}[tuned]
  seen = f"data.image_size={crop}"
  if stored is not None:
    seen += f" and the images in {config.data.path} are {stored} px"
  return (f"warning: this {config.method} recipe was tuned for {what}; {seen}: start from "
          f"{suggested_config(config.method, target)} instead")
