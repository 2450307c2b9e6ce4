"""SimCLR with a CIFAR-stem ResNet-18 on CIFAR-10 from TFDS (for users who have the data).

Run (after `tfds build cifar10 --file_format=array_record` or with an ArrayRecord copy in DATA_DIR):
  python -m ssljax.main --config configs/simclr_resnet18_cifar10.py --workdir workdirs/simclr_c10 \
      --config.data.path=DATA_DIR

Takes 1,000 epochs (97,600 steps at batch 512) like the SimCLR paper's CIFAR-10 runs; on one
A100/H100-class GPU expect on the order of a day (not yet measured by ssljax). The SimCLR paper ("A
Simple Framework for Contrastive Learning of Visual Representations", appendix B.9) reports about
94% linear-probe accuracy for a ResNet-50; CIFAR ResNet-18 SimCLR re-implementations typically
report 90-91% kNN/linear accuracy. ssljax's own figure for this config is not yet measured. The test
suite builds this config and compiles one step on synthetic 32x32 data."""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.cifar10("simclr", batch_size=512, total_steps=97_600)   # 1000 epochs of 50,000
  config.dtype = "bfloat16"
  config.data.augment.crop_scale = (0.08, 1.0)
  config.optimizer.update(name="lars", base_lr=0.3,     # x batch/256, the SimCLR paper's rule
                          weight_decay=1e-6, warmup_steps=976)   # 10 epochs
  config.simclr.update(temperature=0.5, proj_hidden_dims=(2048,), proj_dim=128)
  return config
