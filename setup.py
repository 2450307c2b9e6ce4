"""ssljax: accelerator-native self-supervised pretraining in JAX/Flax."""
import setuptools

setuptools.setup(
    name="ssljax",
    version="0.1.0",
    description="Self-supervised pretraining in JAX/Flax: one trainer, many methods, any mesh.",
    # The shipped configs travel with the package as `ssljax.configs` (so that `--config simclr_digits`
    # works after a plain `pip install .` or `pip install git+URL`), while the files stay in the
    # repository's configs/ folder, where the docs and tests name them by path.
    packages=setuptools.find_packages(include=["ssljax", "ssljax.*"]) + ["ssljax.configs"],
    package_dir={"ssljax.configs": "configs"},
    python_requires=">=3.11",   # jax 0.10.2 and numpy 2.4 need 3.11
    install_requires=[
        "jax==0.10.2",
        "jaxlib==0.10.2",
        "flax==0.12.8",
        "optax==0.2.8",
        "orbax-checkpoint==0.12.8",
        "tensorflow-datasets==4.9.10",
        "grain==0.2.18",
        "ml-collections==1.1.0",
        "chex==0.1.92",
        "absl-py>=2.1",
        "numpy>=1.26,<3",
        "scikit-learn>=1.4",
        "threadpoolctl>=3.1",
        "pillow>=10",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
        "sentencepiece==0.2.3",  # the image-text methods' tokenizer (ssljax.data.text)
        "safetensors==0.8.0",   # export and import weights (numpy only: never imports torch)
    ],
    extras_require={
        # libtpu's ahead-of-time compiler: `python -m ssljax.plan` compiles for a TPU slice on
        # any machine (the version jax[tpu]==0.10.2 pins).
        "tpu-aot": ["libtpu==0.0.42.1"],
        # One per platform (README "Install"): NVIDIA GPUs with CUDA 12 (the CUDA libraries come as
        # pip wheels), Cloud TPU VMs.
        "cuda12": ["jax[cuda12]==0.10.2"],
        "tpu": ["jax[tpu]==0.10.2", "libtpu==0.0.42.1"],
        # TFDS needs TensorFlow to *prepare* a dataset (download_and_prepare); reading the prepared
        # ArrayRecord files does not. 2.21.0 was checked with the lock's numpy 2.4 and protobuf 7:
        # it prepares an ArrayRecord TFDS dataset. The CPU build: preparing needs no accelerator.
        "prepare": ["tensorflow-cpu==2.21.0"],
        # PyTorch interchange (ssljax.interop): load exports into timm / torchvision, or timm /
        # torchvision / transformers (DINOv2) weights into ssljax. ssljax itself never imports
        # torch; the interop tests do (CPU).
        # torch 2.14.1 + torchvision 0.29.1 are the pair pip takes from this project's machines'
        # disk (a CUDA build, 5.5 GB in a venv, installed in about 1.5 min; tests run on the CPU).
        "interop": ["torch==2.14.1", "torchvision==0.29.1", "timm==1.0.31", "transformers==5.25.0"],
        # scikit-image's bundled photographs, for the photo_patches tasks of ssljax.data.benchmarks
        # (only its data files are read).
        "benchmarks": ["scikit-image==0.26.0"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "nbclient>=0.10", "ipykernel>=6.29",
                 "nbformat>=5.10", "scikit-image==0.26.0", "libtpu==0.0.42.1",
                 "torch==2.14.1", "torchvision==0.29.1", "timm==1.0.31", "transformers==5.25.0",
                 # the optional Weights & Biases logger (config.logging.wandb), tested offline
                 "wandb==0.31.0"],
    },
    entry_points={"console_scripts": ["ssljax=ssljax.main:run"]},
)
