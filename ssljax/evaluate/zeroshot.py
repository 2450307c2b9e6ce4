"""Zero-shot classification and image <-> text retrieval of image-text methods.

Any method with `encode_image(params, state, images)` and `encode_text(params, state, tokens,
mask)` (normalised embeddings; ssljax.methods._image_text) is evaluated this way on the held-out
split, online during training and in `python -m ssljax.evaluate --protocol zeroshot,retrieval`:

- zero-shot top-1: each class is the normalised mean of its prompts' text embeddings (an
  ensemble of templates, CLIP's prompt ensembling); an image is given the class whose embedding
  is closest. Prompts: the method's `prompts` config, else the source's, else ('a photo of a {}.',).
- retrieval R@1/5/10, image->text and text->image, over the held-out images and their first
  captions: a hit when one of the top k is relevant, where a text is relevant to an image when
  it is one of that image's captions (word for word, so duplicate captions of other images
  count too, as they describe the image equally well).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from ssljax.data import text as text_data

DEFAULT_PROMPTS = ("a photo of a {}.",)
RECALL_AT = (1, 5, 10)


def is_image_text(method) -> bool:
  return hasattr(method, "encode_text") and hasattr(method, "encode_image")


def zero_shot_top1(image_emb: np.ndarray, labels: np.ndarray, class_emb: np.ndarray) -> float:
  """Top-1 of the nearest class embedding (cosine) over the labelled rows (label >= 0)."""
  keep = labels >= 0
  if not keep.any():
    return float("nan")
  pred = np.argmax(image_emb[keep] @ class_emb.T, axis=1)
  return float(np.mean(pred == labels[keep]))


def class_embeddings(embed_texts, class_names: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
  """[C, E]: per class, the normalised mean of `embed_texts` of its filled-in prompts."""
  texts = [p.format(name) for name in class_names for p in prompts]
  emb = embed_texts(texts).reshape(len(class_names), len(prompts), -1).mean(axis=1)
  return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def retrieval(image_emb: np.ndarray, text_emb: np.ndarray,
              relevant: np.ndarray) -> dict[str, float]:
  """R@k both ways; relevant[i, j]: text j describes image i. Keys 'i2t_r1', ..., 't2i_r10'."""
  sims = image_emb @ text_emb.T
  out = {}
  for direction, s, rel in (("i2t", sims, relevant), ("t2i", sims.T, relevant.T)):
    order = np.argsort(-s, axis=1, kind="stable")
    hits = np.take_along_axis(rel, order, axis=1)
    for k in RECALL_AT:
      out[f"{direction}_r{k}"] = float(np.mean(hits[:, :k].any(axis=1)))
  return out


class ZeroShot:
  """The held-out split's texts and class prompts of an image-text run, tokenised once."""

  def __init__(self, method, source, indices: np.ndarray, mesh):
    from ssljax import parallel  # pylint: disable=import-outside-toplevel
    self.method = method
    self.tokenizer = method.tokenizer
    self.max_len = int(method.cfg.text.max_len)
    records_texts = [text_data.record_texts(source[int(i)]) for i in indices]
    self.texts = [t[0] for t in records_texts]
    self.relevant = np.asarray([[t in own for t in self.texts] for own in records_texts])
    self.class_names = tuple(getattr(source, "class_names", ()) or ())
    self.prompts = (tuple(method.cfg.prompts) or tuple(getattr(source, "prompts", ()) or ())
                    or DEFAULT_PROMPTS)
    self.dp = parallel.data_parallel_size(mesh)
    self.sharding = parallel.batch_sharding(mesh)
    self._encode = jax.jit(parallel.traced_under(method.encode_text, mesh))

  def embed_texts(self, params: Any, state: Any, texts: Sequence[str],
                  chunk: int = 256) -> np.ndarray:
    """[N, E] normalised text embeddings of `texts`, in chunks sharded over the batch."""
    chunk = -(-chunk // self.dp) * self.dp
    ids, mask = self.tokenizer.encode_batch(list(texts), self.max_len)
    out = []
    for start in range(0, len(ids), chunk):
      n = min(chunk, len(ids) - start)
      part = [np.zeros((chunk,) + a.shape[1:], a.dtype) for a in (ids, mask)]
      part[0][:n], part[1][:n] = ids[start:start + n], mask[start:start + n]
      args = [jax.make_array_from_callback(a.shape, self.sharding, lambda i, a=a: a[i])
              for a in part]
      y = self._encode(params, state, *args)
      if not y.is_fully_addressable:
        from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
        y = multihost_utils.process_allgather(y, tiled=True)
      out.append(np.asarray(jax.device_get(y))[:n])
    return np.concatenate(out)

  def evaluate(self, params: Any, state: Any, image_emb: np.ndarray,
               labels: np.ndarray) -> dict[str, float]:
    """{'zeroshot_top1' (when the source names its classes), 'i2t_r1', ..., 't2i_r10'}."""
    out = {}
    embed = lambda texts: self.embed_texts(params, state, texts)  # noqa: E731
    if self.class_names:
      out["zeroshot_top1"] = zero_shot_top1(
          image_emb, labels, class_embeddings(embed, self.class_names, self.prompts))
    out.update(retrieval(image_emb, embed(self.texts), self.relevant))
    return out
