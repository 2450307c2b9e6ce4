"""Prepares an image dataset as ArrayRecord shards, without TensorFlow.

  python -m ssljax.data.prepare --from image_folder SRC --to DIR [--format jpeg|png|raw]

SRC is laid out as `data.source='image_folder'` reads it: SRC/<split>/<class>/<image> (e.g. ImageNet's
train/ and val/ folders of class folders); every split sub-folder is written (or those named with
--splits). With --as-split NAME, SRC is one split's folder of class folders. DIR gets one sub-folder
per split of `<split>-NNNNN-of-MMMMM.array_record` shards and `ssljax_dataset.json` (classes, the
image encoding, per split its shards and per-class counts); train on it with
`--config.data.source=array_record --config.data.path=DIR` (ssljax/data/array_record.py reads it).

Images: --format jpeg (default) keeps JPEG files' bytes as they are and encodes others at
--quality; png stores lossless PNG; raw stores the decoded uint8 pixels. Labels index the sorted
union of the class folder names of all splits, so train and val labels agree. The output is a
function of the input files alone (sorted order, no randomness): preparing twice gives the same bytes.
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
import time

import numpy as np

from ssljax.data import array_record as ar
from ssljax.data import sources

DEFAULT_EXAMPLES_PER_SHARD = 10_000


def list_split(root: str, classes: list[str] | None = None) -> tuple[list[str], list[str], list[int]]:
  """(class names, files, labels) of a folder of class folders; labels index `classes` if given."""
  names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  classes = names if classes is None else classes
  index = {c: i for i, c in enumerate(classes)}
  files, labels = [], []
  for name in names:
    for f in sorted(os.listdir(os.path.join(root, name))):
      if f.lower().endswith(sources.IMAGE_EXTENSIONS):
        files.append(os.path.join(root, name, f))
        labels.append(index[name])
  return names, files, labels


def encode_image(path: str, encoding: str, quality: int) -> tuple[bytes, tuple[int, int, int]]:
  """(payload, (H, W, C)) of one image file for `encoding` ('jpeg' keeps a JPEG file's bytes)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if encoding == "jpeg":
    try:
      with Image.open(path) as im:
        if im.format == "JPEG":
          with open(path, "rb") as f:
            return f.read(), (im.height, im.width, 3)
    except Exception as e:  # Pillow raises several types for corrupt files
      raise sources.ImageReadError(f"cannot read image {path!r}: {e}") from e
  pixels = sources.load_image(path)   # RGB uint8 [H, W, 3]; raises ImageReadError naming the path
  if encoding == "raw":
    return pixels.tobytes(), pixels.shape
  buf = io.BytesIO()
  if encoding == "png":
    Image.fromarray(pixels).save(buf, format="PNG")
  else:
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality, subsampling=0)
  return buf.getvalue(), pixels.shape


def write_shard(path: str, files: list[str], labels: list[int], encoding: str, quality: int) -> int:
  """Writes one shard (via a temporary name, renamed when complete); returns its record count."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  tmp = path + ".tmp"
  writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
  try:
    for f, label in zip(files, labels):
      payload, shape = encode_image(f, encoding, quality)
      writer.write(ar.encode_record(payload, label, encoding, shape))
  finally:
    writer.close()
  os.replace(tmp, path)
  return len(files)


def _write_shard_job(job):
  return write_shard(*job)


def prepare_image_folder(src: str, dst: str, *, splits: list[str] | None = None,
                         as_split: str | None = None, encoding: str = "jpeg", quality: int = 95,
                         examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD, workers: int = 1,
                         overwrite: bool = False, log=print) -> dict:
  """Writes SRC's splits to DST as ArrayRecord shards; returns the dataset description (the JSON)."""
  if encoding not in ar.ENCODINGS:
    raise ValueError(f"--format {encoding!r}; expected one of {ar.ENCODINGS}")
  if not 1 <= quality <= 100:
    raise ValueError(f"--quality {quality}; expected 1..100")
  if examples_per_shard < 1:
    raise ValueError(f"--examples-per-shard {examples_per_shard}; expected >= 1")
  if not os.path.isdir(src):
    raise FileNotFoundError(f"--from image_folder {src!r}: no such folder")
  if os.path.exists(os.path.join(dst, ar.INFO_FILE)) and not overwrite:
    raise FileExistsError(f"--to {dst!r} already holds a prepared dataset ({ar.INFO_FILE}); "
                          f"pass --overwrite to replace it")
  if as_split:
    roots = {as_split: src}
  else:
    found = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    wanted = splits or found
    missing = [s for s in wanted if s not in found]
    if missing:
      raise FileNotFoundError(f"split folder(s) {missing} not in {src!r}; it has {found}")
    roots = {s: os.path.join(src, s) for s in wanted}
    loose = [s for s, r in roots.items() if any(
        f.lower().endswith(sources.IMAGE_EXTENSIONS) for f in os.listdir(r))]
    if loose:
      raise ValueError(f"{os.path.join(src, loose[0])!r} holds image files itself: SRC must hold "
                       f"split folders of class folders (SRC/<split>/<class>/<image>); if "
                       f"{src!r} is one split's class folders, pass --as-split NAME")
  classes = sorted(set().union(*(list_split(r)[0] for r in roots.values())))
  if not classes:
    raise FileNotFoundError(f"no class folders under {src!r} (expected SRC/<split>/<class>/<image>)")
  info = {"format_version": 1, "encoding": encoding, "classes": classes, "splits": {},
          "source": os.path.abspath(src)}
  if encoding == "jpeg":
    info["jpeg_quality"] = quality
  for split, root in roots.items():
    _, files, labels = list_split(root, classes)
    if not files:
      raise FileNotFoundError(f"split {split!r} ({root!r}) holds no image files "
                              f"(extensions {sources.IMAGE_EXTENSIONS}) in class folders")
    os.makedirs(os.path.join(dst, split), exist_ok=True)
    n_shards = -(-len(files) // examples_per_shard)
    jobs, shards = [], []
    for i in range(n_shards):
      lo, hi = i * examples_per_shard, min((i + 1) * examples_per_shard, len(files))
      rel = os.path.join(split, f"{split}-{i:05d}-of-{n_shards:05d}.array_record")
      jobs.append((os.path.join(dst, rel), files[lo:hi], labels[lo:hi], encoding, quality))
      shards.append({"file": rel, "num_examples": hi - lo})
    t0 = time.perf_counter()
    if workers > 1 and n_shards > 1:
      with multiprocessing.get_context("spawn").Pool(min(workers, n_shards)) as pool:
        for done, _ in enumerate(pool.imap(_write_shard_job, jobs), 1):
          log(f"  {split}: shard {done}/{n_shards}")
    else:
      for done, job in enumerate(jobs, 1):
        write_shard(*job)
        log(f"  {split}: shard {done}/{n_shards}")
    counts = np.bincount(labels, minlength=len(classes))
    info["splits"][split] = {
        "num_examples": len(files), "shards": shards,
        "class_counts": {c: int(n) for c, n in zip(classes, counts)}}
    log(f"{split}: {len(files)} images in {n_shards} shard(s), {time.perf_counter() - t0:.1f} s")
  with open(os.path.join(dst, ar.INFO_FILE), "w") as f:
    json.dump(info, f, indent=1)
  return info


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m ssljax.data.prepare",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--from", dest="kind", required=True, choices=["image_folder"],
                      help="the input's kind")
  parser.add_argument("src", help="the input folder (SRC/<split>/<class>/<image>)")
  parser.add_argument("--to", dest="dst", required=True, help="the output folder")
  parser.add_argument("--format", dest="encoding", default="jpeg", choices=ar.ENCODINGS,
                      help="image bytes stored: jpeg (JPEG files kept as they are), png, raw")
  parser.add_argument("--quality", type=int, default=95, help="JPEG quality of re-encoded images")
  parser.add_argument("--splits", nargs="+", help="split folders to write (default: all)")
  parser.add_argument("--as-split", help="SRC is one split's class folders; write it as this split")
  parser.add_argument("--examples-per-shard", type=int, default=DEFAULT_EXAMPLES_PER_SHARD)
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="processes writing shards in parallel")
  parser.add_argument("--overwrite", action="store_true", help="replace a prepared dataset in --to")
  args = parser.parse_args(argv)
  try:
    info = prepare_image_folder(args.src, args.dst, splits=args.splits, as_split=args.as_split,
                                encoding=args.encoding, quality=args.quality,
                                examples_per_shard=args.examples_per_shard, workers=args.workers,
                                overwrite=args.overwrite)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  splits = ", ".join(f"{s} {v['num_examples']}" for s, v in info["splits"].items())
  print(f"wrote {args.dst}: {len(info['classes'])} classes; {splits} images; train with "
        f"--config.data.source=array_record --config.data.path={args.dst}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
