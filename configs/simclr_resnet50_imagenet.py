"""SimCLR with a ResNet-50 on ImageNet-1k (TFDS imagenet2012, ArrayRecord), for a TPU pod or GPU cluster.

Run on a v4-32 Cloud TPU slice (4 hosts x 4 chips = 16 devices; see README "Scaling up"):
  launch/tpu_pod.sh --tpu NAME --zone us-central2-b -- \
      --config configs/simclr_resnet50_imagenet.py --workdir /mnt/shared/simclr_r50 \
      --config.data.path=/mnt/shared/tensorflow_datasets
or on one machine with its accelerators:
  python -m ssljax.main --config configs/simclr_resnet50_imagenet.py --workdir workdirs/simclr_r50 \
      --config.data.path=DATA_DIR

Data: imagenet2012 prepared once in ArrayRecord format in DATA_DIR (the ILSVRC2012 tar files in
DATA_DIR/downloads/manual, then tfds.builder('imagenet2012', data_dir=DATA_DIR,
file_format='array_record').download_and_prepare()); DATA_DIR must be readable from every host.
Recipe: the SimCLR paper's ImageNet setting ("A Simple Framework for Contrastive Learning of Visual
Representations", Chen et al. 2020): batch 4096, LARS at 0.3 x batch/256, weight decay 1e-6,
temperature 0.1, 10 warm-up epochs, 100 epochs (31,300 steps), colour jitter strength 1.0 with
blur. The paper reports 64.5% linear-probe top-1 for 100 epochs at batch 4096 (69.3% at 1000
epochs). ssljax has NOT run this config yet: neither its time on a v4-32 nor its accuracy is
measured; the test suite only builds it and checks it validates.
"""
from ssljax.config import base_config

IMAGENET_TRAIN = 1_281_167


def get_config():
  config = base_config(method="simclr", model="resnet")
  config.seed = 0
  config.batch_size = 4096             # global, over all hosts and devices (256 per v4 chip on a v4-32)
  epochs = 100
  steps_per_epoch = IMAGENET_TRAIN // config.batch_size    # 312
  config.total_steps = epochs * steps_per_epoch + 100      # 31,300
  config.log_every = 50
  config.eval_every = 5 * steps_per_epoch
  config.checkpoint_every = 1_000
  config.keep_checkpoints = 3
  config.dtype = "bfloat16"
  config.mesh.data = -1
  config.param_sharding = "replicated"  # 25M params: data parallel is enough; 'fsdp' also works

  config.model.depth = 50
  config.model.cifar_stem = False

  config.data.source = "tfds"
  config.data.tfds_name = "imagenet2012"
  config.data.train_split = "train"
  config.data.eval_split = "validation"
  config.data.image_size = 224
  config.data.worker_count = 32        # grain worker processes per host (a v4 host has 240 vCPUs)
  config.data.prefetch = 4
  aug = config.data.augment
  aug.crop_scale = (0.08, 1.0)
  aug.brightness, aug.contrast, aug.saturation, aug.hue = 0.8, 0.8, 0.8, 0.2   # strength 1.0
  aug.color_jitter_prob = 0.8
  aug.grayscale_prob = 0.2
  aug.blur_prob = 0.5
  aug.mean = (0.485, 0.456, 0.406)
  aug.std = (0.229, 0.224, 0.225)

  config.optimizer.name = "lars"
  config.optimizer.base_lr = 0.3       # x batch/256 = 4.8 at batch 4096
  config.optimizer.weight_decay = 1e-6
  config.optimizer.warmup_steps = 10 * steps_per_epoch

  config.simclr.temperature = 0.1
  config.simclr.proj_hidden_dims = (2048,)
  config.simclr.proj_dim = 128

  config.eval.max_examples = 10_000    # kNN bank / linear-probe subset during training
  config.eval.linear_epochs = 30
  config.eval.batch_size = 1024
  return config
