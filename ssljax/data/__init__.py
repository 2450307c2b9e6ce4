"""Data: sources (digits, image_folder, tfds, synthetic), per-record augmentations, the grain pipeline."""
