"""Image datasets as ArrayRecord shards, read without TensorFlow: the record format and the source.

`python -m ssljax.data.prepare --from image_folder SRC --to DIR` writes them (ssljax/data/prepare.py);
`ArrayRecordSource(DIR, split)` reads them with random access (all grain's `MapDataset.source` needs:
grain shards by process in the pipeline, so multi-host runs need nothing more of the source).
Importing this module registers it as `data.source='array_record'`, with `data.path=DIR` and
`data.train_split` / `data.eval_split` naming split sub-folders of DIR.

Layout of DIR (one sub-folder per split, like an image folder's `train/` and `val/`):
  DIR/ssljax_dataset.json                          classes, format, per split: shards, counts
  DIR/<split>/<split>-00000-of-00004.array_record  records, written with 'group_size:1'

A record is a 14-byte little-endian header `<B i I I B` (encoding, label, height, width, channels)
followed by the image: JPEG bytes ('jpeg'), PNG bytes ('png') or uint8 pixels [H, W, C] ('raw').
Records decode to {'image': uint8 [H, W, 3] RGB, 'label': int}.
"""
from __future__ import annotations

import io
import json
import os
import struct
from typing import Any

import numpy as np

from ssljax.data import sources

INFO_FILE = "ssljax_dataset.json"
ENCODINGS = ("jpeg", "png", "raw")
_HEADER = struct.Struct("<BiIIB")


def encode_record(payload: bytes, label: int, encoding: str, shape: tuple[int, int, int]) -> bytes:
  """One record: the header then `payload` (JPEG / PNG bytes, or raw uint8 pixels)."""
  if encoding not in ENCODINGS:
    raise ValueError(f"encoding={encoding!r}; expected one of {ENCODINGS}")
  h, w, c = shape
  return _HEADER.pack(ENCODINGS.index(encoding), int(label), h, w, c) + payload


def decode_record(record: bytes) -> dict[str, Any]:
  """{'image': uint8 [H, W, 3], 'label': int} of a record written by `encode_record`."""
  code, label, h, w, c = _HEADER.unpack_from(record)
  if code >= len(ENCODINGS):
    raise ValueError(f"record encoding code {code}; expected 0..{len(ENCODINGS) - 1} "
                     f"({', '.join(ENCODINGS)}): not an ssljax ArrayRecord dataset?")
  payload = memoryview(record)[_HEADER.size:]
  if ENCODINGS[code] == "raw":
    image = np.frombuffer(payload, np.uint8).reshape(h, w, c)
  else:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(io.BytesIO(payload)) as im:
      image = np.asarray(im.convert("RGB"), np.uint8)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return {"image": image, "label": label}


def read_info(directory: str) -> dict[str, Any]:
  """The dataset's JSON description (classes, encoding, splits with shards and counts)."""
  path = os.path.join(directory, INFO_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path!r} does not exist: data.path must be a folder written by "
                            f"`python -m ssljax.data.prepare --from image_folder SRC --to DIR`")
  with open(path) as f:
    return json.load(f)


class ArrayRecordSource:
  """One split of a prepared dataset: random access to {'image': uint8 [H, W, 3], 'label': int}.

  Readers open lazily in the process that reads (the source pickles to grain's worker processes
  as its paths). `classes`, `num_classes` and `channels` (3) are what evaluation needs.
  """

  def __init__(self, directory: str, split: str):
    info = read_info(directory)
    splits = info.get("splits", {})
    if split not in splits:
      raise ValueError(f"ArrayRecord dataset {directory!r} has no split {split!r}; "
                       f"expected one of {sorted(splits)}")
    shards = splits[split]["shards"]
    missing = [s["file"] for s in shards if not os.path.exists(os.path.join(directory, s["file"]))]
    if missing:
      raise FileNotFoundError(f"ArrayRecord dataset {directory!r} split {split!r} is missing "
                              f"{len(missing)} shard file(s), e.g. {missing[0]!r}")
    # 'path[0:n]' tells array_record the record count, so nothing is opened here.
    self._paths = [f"{os.path.join(directory, s['file'])}[0:{s['num_examples']}]"
                   for s in shards if s["num_examples"]]
    self._len = sum(s["num_examples"] for s in shards)
    self._reader = None
    self.directory, self.split = directory, split
    self.classes = list(info["classes"])
    self.num_classes, self.channels = len(self.classes), 3
    self.encoding = info.get("encoding", "jpeg")

  def __len__(self) -> int:
    return self._len

  def _records(self):
    if self._reader is None:
      from array_record.python import array_record_data_source  # pylint: disable=import-outside-toplevel
      self._reader = array_record_data_source.ArrayRecordDataSource(self._paths)
    return self._reader

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if not 0 <= index < self._len:
      raise IndexError(f"index {index} out of range for {self._len} records of split "
                       f"{self.split!r} in {self.directory!r}")
    return decode_record(self._records()[index])

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_reader"] = None
    return state


def build(data_cfg, split: str) -> ArrayRecordSource:
  """The source for `data.source='array_record'`: split `split` (a sub-folder named in the
  dataset's JSON, e.g. 'train' / 'val') of the dataset at `data.path`."""
  if not data_cfg.path:
    raise ValueError("data.source='array_record' needs data.path: the folder written by "
                     "`python -m ssljax.data.prepare --from image_folder SRC --to DIR`")
  return ArrayRecordSource(data_cfg.path, split)


# `data.source='array_record'` (a registry entry that lazily imports this module registers the
# same builder or its own; either way the name stays taken once).
if "array_record" not in sources.available():
  sources.register("array_record", build)
