"""Text for image-text methods: a sentencepiece tokenizer and the caption views.

The tokenizer is a sentencepiece model (the library big_vision's SigLIP uses). It is either a
model file the config names (`<method>.tokenizer`, e.g. a released SigLIP / T5 `.model` file) or
trained at build time on the captions of the train split (`Tokenizer.train`, deterministic: one
thread, a fixed seed sentence order), so a run, its evaluations and its export see the same ids.
Its serialised model travels inside the view spec (bytes, picklable into grain workers) and is
written next to the checkpoints and into the export as `tokenizer.model`.

Every caption becomes [BOS] pieces [EOS] cut / padded to `max_len` ids with a mask (True on real
tokens); a caption longer than that keeps its first `max_len - 1` ids and its EOS.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import os
from typing import Any, Iterable, Sequence

import numpy as np

from ssljax.data.views import Field, Views

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 3, 0, 1, 2


class Tokenizer:
  """A sentencepiece model (`proto`: its serialised bytes) with ssljax's caption layout."""

  def __init__(self, proto: bytes):
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    self.proto = bytes(proto)
    try:
      self.sp = spm.SentencePieceProcessor(model_proto=self.proto)
    except Exception as e:  # sentencepiece raises RuntimeError / OSError on bad bytes
      raise ValueError(f"not a sentencepiece model ({len(self.proto)} bytes): {e}") from e
    self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else PAD_ID
    self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()
    self.vocab_size = max(self.sp.get_piece_size(), self.pad_id + 1)

  @classmethod
  def load(cls, path: str) -> "Tokenizer":
    """A sentencepiece `.model` file."""
    if not os.path.isfile(path):
      raise FileNotFoundError(f"tokenizer file {path!r} does not exist; expected a "
                              f"sentencepiece .model file")
    with open(path, "rb") as f:
      return cls(f.read())

  @classmethod
  def train(cls, texts: Iterable[str], vocab_size: int) -> "Tokenizer":
    """A BPE sentencepiece model trained on `texts` (at most `vocab_size` pieces; on the small
    caption sets of the embedded data, unigram training stops at a near-character vocabulary)."""
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    texts = [t for t in texts if t.strip()]
    if not texts:
      raise ValueError("cannot train a tokenizer: the captions are empty")
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=out, vocab_size=int(vocab_size),
        model_type="bpe", unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID,
        character_coverage=1.0, hard_vocab_limit=False, num_threads=1, minloglevel=2,
        input_sentence_size=2_000_000, shuffle_input_sentence=False)
    return cls(out.getvalue())

  def save(self, path: str) -> None:
    with open(path, "wb") as f:
      f.write(self.proto)

  def encode(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [max_len], mask bool [max_len]) of one caption."""
    ids = [self.bos_id] + self.sp.encode(str(text)) + [self.eos_id]
    if len(ids) > max_len:
      ids = ids[:max_len - 1] + [self.eos_id]
    out = np.full((max_len,), self.pad_id, np.int32)
    out[:len(ids)] = ids
    return out, np.arange(max_len) < len(ids)

  def encode_batch(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [N, max_len], mask bool [N, max_len])."""
    pairs = [self.encode(t, max_len) for t in texts]
    return (np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, max_len), np.int32),
            np.stack([p[1] for p in pairs]) if pairs else np.zeros((0, max_len), bool))


@functools.lru_cache(maxsize=8)
def _trained(texts: tuple[str, ...], vocab_size: int) -> Tokenizer:
  return Tokenizer.train(texts, vocab_size)


def record_texts(record: dict[str, Any]) -> tuple[str, ...]:
  """The captions of a record: record['texts'] (a string or a sequence of strings)."""
  texts = record.get("texts")
  if texts is None:
    raise ValueError(f"record has keys {sorted(record)}; an image-text method needs 'texts' "
                     f"(use a paired source: captioned_digits, captions, webdataset)")
  if isinstance(texts, (str, bytes)):
    texts = (texts,)
  return tuple(t.decode() if isinstance(t, bytes) else str(t) for t in texts)


def source_texts(source) -> tuple[str, ...]:
  """Every caption of a source (its `captions()` when it has one, else read record by record)."""
  if hasattr(source, "captions"):
    return tuple(source.captions())
  return tuple(t for i in range(len(source)) for t in record_texts(source[i]))


def tokenizer_for(path: str, source_fn, vocab_size: int) -> Tokenizer:
  """The named model file, or one trained on `source_fn()`'s captions (cached per process)."""
  if path:
    return Tokenizer.load(path)
  return _trained(source_texts(source_fn()), int(vocab_size))


@dataclasses.dataclass(frozen=True)
class CaptionViews(Views):
  """One caption per record, drawn at random among its captions, as token ids and their mask.

  Fields: `name` tokens [L] int32 and `name`_mask mask [L] (True on real tokens). The record's
  captions are record['texts']. Evaluation input: the first caption's ids.
  """
  tokenizer_proto: bytes = b""
  max_len: int = 16
  name: str = "tokens"

  def __post_init__(self):
    if self.max_len < 3:
      raise ValueError(f"CaptionViews: max_len={self.max_len}; expected >= 3 (BOS, a piece, EOS)")

  @property
  def tokenizer(self) -> Tokenizer:
    return _tokenizer_from_proto(self.tokenizer_proto)

  def fields(self):
    return {self.name: Field("tokens"), f"{self.name}_mask": Field("mask")}

  def make(self, record, rng, aug_cfg):
    del aug_cfg
    texts = record_texts(record)
    text = texts[int(rng.integers(len(texts)))] if len(texts) > 1 else texts[0]
    ids, mask = self.tokenizer.encode(text, self.max_len)
    return {self.name: ids, f"{self.name}_mask": mask}

  @property
  def eval_kind(self) -> str:
    return "tokens"

  def eval_input(self, record, aug_cfg):
    del aug_cfg
    return self.tokenizer.encode(record_texts(record)[0], self.max_len)[0]


@functools.lru_cache(maxsize=4)
def _tokenizer_from_proto(proto: bytes) -> Tokenizer:
  return Tokenizer(proto)
