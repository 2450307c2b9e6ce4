"""SimCLR with a ResNet-50 on ImageNet-1k (TFDS imagenet2012), for a TPU pod or GPU cluster.

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
from ssljax import config as config_lib

common = config_lib.import_sibling(__file__)   # configs/common.py


def get_config():
  config = common.simclr_jitter(common.imagenet("simclr", "resnet", batch_size=4096, tfds=True))
  steps_per_epoch = common.imagenet_steps(config.batch_size)   # 312
  config.total_steps = 100 * steps_per_epoch + 100             # 31,300
  config.log_every = 50
  config.eval_every = 5 * steps_per_epoch
  config.checkpoint_every = 1_000
  config.param_sharding = "replicated"  # 25M params: data parallel is enough; 'fsdp' also works
  config.optimizer.update(name="lars", base_lr=0.3,   # x batch/256 = 4.8 at batch 4096
                          weight_decay=1e-6, warmup_steps=10 * steps_per_epoch)
  config.simclr.update(temperature=0.1, proj_hidden_dims=(2048,), proj_dim=128)
  return config
