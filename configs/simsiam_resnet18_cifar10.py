"""SimSiam with a CIFAR-stem ResNet-18 on CIFAR-10 from TFDS: the paper's CIFAR recipe (appendix D).

Run (after `tfds build cifar10 --file_format=array_record` or with an ArrayRecord copy in DATA_DIR):
  python -m ssljax.main --config configs/simsiam_resnet18_cifar10.py \
      --workdir workdirs/simsiam_c10 \
      --config.data.path=DATA_DIR

800 epochs at batch 512 (78,000 steps), SGD momentum 0.9, base lr 0.03 x batch/256, weight decay
5e-4, a 2-layer projector of 2048 with output BN and a 512-wide predictor bottleneck.
"Exploring Simple Siamese Representation Learning" reports 91.8% kNN accuracy on CIFAR-10 with
this recipe; ssljax has NOT measured this config yet (no time or figure is claimed for it).
Difference: the reference does not decay the predictor's learning rate (here it follows the one
cosine schedule).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.cifar10("simsiam", batch_size=512, total_steps=78_000)  # 800 epochs of 50,000
  config.optimizer.update(name="sgd", base_lr=0.03, weight_decay=5e-4, momentum=0.9,
                          warmup_steps=0)    # the reference has no warm-up
  config.simsiam.update(proj_hidden_dims=(2048,), proj_dim=2048, pred_hidden_dims=(512,))
  return config
