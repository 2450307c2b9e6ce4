"""SwAV with a ResNet-50 on ImageNet-1k (TFDS imagenet2012): multi-crop 2x224 + 6x96, 800 epochs.

Run:
  python -m ssljax.main --config configs/swav_resnet50_imagenet.py --workdir workdirs/swav_r50 \
      --config.data.path=DATA_DIR

Data: imagenet2012 prepared once in ArrayRecord format in DATA_DIR (tfds.builder('imagenet2012',
data_dir=DATA_DIR, file_format='array_record').download_and_prepare() with the ILSVRC2012 tar files
in DATA_DIR/downloads/manual).
Recipe ("Unsupervised Learning of Visual Features by Contrasting Cluster Assignments", Caron et al.
2020, its reference scripts for batch 4096): 2 global crops (scale 0.14-1) and 6 local 96 px crops
(scale 0.05-0.14), head 2048-2048-128, 3000 prototypes frozen during the first epoch, temperature
0.1, epsilon 0.05, 3 Sinkhorn iterations, LARS lr 0.3 x batch/256 = 4.8, final lr 0.0048, weight
decay 1e-6, 10 warm-up epochs, 800 epochs (249,600 steps), no queue at this batch size. The paper
reports 75.3% linear-probe top-1. ssljax has NOT run this config yet: neither its time nor its
accuracy is measured. For batch 256 set swav.queue_length=3840 and swav.queue_start_step to
epoch 15 (the paper's small-batch recipe).
"""
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.imagenet("swav", "resnet", batch_size=4096, epochs=800, tfds=True)
  common.simclr_jitter(config)
  config.data.augment.crop_scale = (0.14, 1.0)
  steps_per_epoch = common.imagenet_steps(config.batch_size)   # 312
  config.optimizer.update(name="lars", base_lr=0.3,   # x batch/256 = 4.8 at batch 4096
                          weight_decay=1e-6, warmup_steps=10 * steps_per_epoch, end_lr_frac=0.001)
  config.swav.update(proj_hidden_dims=(2048,), proj_dim=128, num_prototypes=3000, temperature=0.1,
                     epsilon=0.05, sinkhorn_iters=3, local_crops=6, local_size=96,
                     local_scale=(0.05, 0.14), freeze_prototypes_steps=steps_per_epoch,
                     queue_length=0)
  return config
