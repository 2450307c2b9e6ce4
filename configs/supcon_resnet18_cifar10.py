"""SupCon with a CIFAR-stem ResNet-18 on CIFAR-10 from TFDS: the reference code's CIFAR recipe.

Run (after `tfds build cifar10 --file_format=array_record` or with an ArrayRecord copy in DATA_DIR):
  python -m ssljax.main --config configs/supcon_resnet18_cifar10.py --workdir workdirs/supcon_c10 \
      --config.data.path=DATA_DIR

1000 epochs at batch 1024 (48,800 steps), SGD momentum 0.9, lr 0.5 at batch 1024 (base lr 0.125 x
batch/256), weight decay 1e-4, 10 warm-up epochs, T = 0.1, projection head 512 -> 512 -> 128 without
BN (the reference's 'mlp' head for a 512-d ResNet-18). Uses the CIFAR-10 labels (supervised).
"Supervised Contrastive Learning" reports 96.0% top-1 on CIFAR-10 for a ResNet-50; ssljax has NOT
measured this config yet (no time or figure is claimed for it).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.cifar10("supcon", batch_size=1024, total_steps=48_800)  # 1000 epochs of 50,000
  config.optimizer.update(name="sgd", base_lr=0.125,    # x batch/256 = 0.5 at batch 1024
                          weight_decay=1e-4, momentum=0.9, warmup_steps=490)   # 10 epochs
  config.supcon.update(temperature=0.1, proj_hidden_dims=(512,), proj_dim=128, proj_use_bn=False)
  return config
