"""Image-text pretraining: text tower, tokenizer, paired sources, zero-shot / retrieval maths,
CLIP / SigLIP / LiT through the unchanged trainer (a few steps; learning: test_image_text_learning.py)."""
import io
import json
import os
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import load_config
from ssljax import config as config_lib
from ssljax.data import paired, pipeline, sources, views
from ssljax.data import text as text_data
from ssljax.evaluate import zeroshot
from ssljax.models import text as text_model


@pytest.fixture(scope="module")
def tokenizer():
  return text_data.Tokenizer.train(paired.captioned_digits("train", 24).captions(), 128)


# --------------------------------------------------------------------------------- text tower

def _tower(**kw):
  return text_model.TextEncoder(vocab_size=50, max_len=8, width=32, depth=2, num_heads=2, **kw)


@pytest.mark.parametrize("pool", text_model.POOLS)
def test_padding_is_invisible(pool):
  """What sits in the padded positions changes nothing: the mask reaches the attention kernel."""
  tower = _tower(pool=pool)
  ids = np.array([[1, 7, 9, 2, 3, 3, 3, 3]], np.int32)
  mask = ids != 3
  other = ids.copy()
  other[0, 4:] = [11, 12, 13, 14]
  v = tower.init(jax.random.PRNGKey(0), ids, mask)
  a, b = tower.apply(v, ids, mask), tower.apply(v, other, mask)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  # ...while an unmasked change of a real token does change it.
  real = ids.copy()
  real[0, 1] = 8
  assert np.abs(np.asarray(tower.apply(v, real, mask)) - np.asarray(a)).max() > 1e-4


def test_causal_tower_does_not_look_ahead():
  tower = _tower(pool="first", causal=True)
  ids = np.array([[1, 7, 9, 2, 4, 5, 6, 2]], np.int32)
  v = tower.init(jax.random.PRNGKey(0), ids)
  later = ids.copy()
  later[0, 3:] = 10
  np.testing.assert_allclose(np.asarray(tower.apply(v, ids)), np.asarray(tower.apply(v, later)),
                             atol=1e-5)
  bidir = _tower(pool="first")
  vb = bidir.init(jax.random.PRNGKey(0), ids)
  assert np.abs(np.asarray(bidir.apply(vb, ids)) - np.asarray(bidir.apply(vb, later))).max() > 1e-4


def test_eos_pool_is_the_last_real_token():
  tower = _tower(pool="eos", out_dim=0)
  ids = np.array([[1, 7, 2, 3, 3, 3, 3, 3], [1, 7, 9, 9, 9, 2, 3, 3]], np.int32)
  mask = ids != 3
  v = tower.init(jax.random.PRNGKey(0), ids, mask)
  # Truncating after the EOS (fewer positions) gives the same pooled vector for row 0.
  short = tower.apply(v, ids[:1, :3], mask[:1, :3])
  np.testing.assert_allclose(np.asarray(tower.apply(v, ids, mask))[0], np.asarray(short)[0],
                             atol=1e-5)


def test_tower_errors():
  with pytest.raises(ValueError, match="pool='cls'"):
    _tower(pool="cls")
  with pytest.raises(ValueError, match="max_len=8"):
    t = _tower()
    t.init(jax.random.PRNGKey(0), np.zeros((1, 9), np.int32))


# --------------------------------------------------------------------------------- tokenizer

def test_tokenizer_is_deterministic_and_word_level(tokenizer):
  again = text_data.Tokenizer.train(paired.captioned_digits("train", 24).captions(), 128)
  assert again.proto == tokenizer.proto
  ids, mask = tokenizer.encode("a small red seven on the left", 16)
  n = int(mask.sum())
  assert ids[0] == tokenizer.bos_id and ids[n - 1] == tokenizer.eos_id
  assert np.all(ids[n:] == tokenizer.pad_id) and n <= 10   # whole words: 7 pieces + BOS/EOS
  assert tokenizer.sp.decode(ids[1:n - 1].tolist()) == "a small red seven on the left"


def test_tokenizer_truncates_keeping_eos_and_roundtrips(tokenizer, tmp_path):
  ids, mask = tokenizer.encode(" ".join(["seven"] * 40), 6)
  assert mask.all() and ids[-1] == tokenizer.eos_id and ids[0] == tokenizer.bos_id
  path = str(tmp_path / "tok.model")
  tokenizer.save(path)
  assert text_data.Tokenizer.load(path).proto == tokenizer.proto
  (tmp_path / "bad.model").write_bytes(b"not a model")
  with pytest.raises(ValueError, match="not a sentencepiece model"):
    text_data.Tokenizer.load(str(tmp_path / "bad.model"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    text_data.Tokenizer.load(str(tmp_path / "missing.model"))


# --------------------------------------------------------------------------------- paired data

def test_captioned_digits_hold_out_colour_combinations():
  train, val = paired.captioned_digits("train", 24), paired.captioned_digits("val", 24)
  assert len(train) == 2 * 1437 and len(val) == 360
  assert train.images.shape[1:] == (24, 24, 3)
  again = paired.captioned_digits.__wrapped__("val", 24)
  np.testing.assert_array_equal(again.images, val.images)
  assert again.texts == val.texts
  colours = tuple(paired.COLOURS)

  def combos(src):
    out = set()
    for texts, label in zip(src.texts, src.labels):
      assert all(paired.DIGIT_WORDS[label] in t for t in texts)
      colour = [c for c in colours if c in texts[0]]
      out.add((int(label), colour[0]))
    return out

  held = {(d, colours[paired._held_out_colour(d)]) for d in range(10)}
  assert not combos(train) & held          # never seen in training
  assert held <= combos(val)               # all of them in the held-out split


def _write_pairs(root, split, n, fmt):
  src = paired.captioned_digits("val", 24)
  d = os.path.join(root, split)
  os.makedirs(d, exist_ok=True)
  if fmt == "captions":
    with open(os.path.join(d, "captions.jsonl"), "w") as f:
      for i in range(n):
        Image.fromarray(src.images[i]).save(os.path.join(d, f"img{i}.png"))
        f.write(json.dumps({"image": f"img{i}.png", "text": list(src.texts[i]),
                            "label": int(src.labels[i])}) + "\n")
  else:
    with tarfile.open(os.path.join(d, "shard-000.tar"), "w") as tar:
      for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(src.images[i]).save(buf, format="PNG")
        for name, data in ((f"s{i:04d}.png", buf.getvalue()),
                           (f"s{i:04d}.txt", "\n".join(src.texts[i]).encode()),
                           (f"s{i:04d}.cls", str(src.labels[i]).encode())):
          info = tarfile.TarInfo(name)
          info.size = len(data)
          tar.addfile(info, io.BytesIO(data))
  with open(os.path.join(root, "classes.txt"), "w") as f:
    f.write("\n".join(paired.DIGIT_WORDS))
  return src


@pytest.mark.parametrize("fmt", ["captions", "webdataset"])
def test_paired_folders_read_back(fmt, tmp_path):
  src = _write_pairs(str(tmp_path), "train", 12, fmt)
  cls = paired.CaptionsFolderSource if fmt == "captions" else paired.WebDatasetSource
  got = cls(str(tmp_path), "train")
  assert len(got) == 12 and got.class_names == paired.DIGIT_WORDS
  for i in (0, 11):
    rec = got[i]
    np.testing.assert_array_equal(rec["image"], src.images[i])
    assert rec["texts"] == src.texts[i] and rec["label"] == src.labels[i]


def test_paired_folder_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="captions.jsonl"):
    paired.CaptionsFolderSource(str(tmp_path), "train")
  (tmp_path / "train").mkdir()
  (tmp_path / "train" / "captions.jsonl").write_text('{"image": "a.png"}\n')
  with pytest.raises(ValueError, match="line 1: expected an object with 'image' and 'text'"):
    paired.CaptionsFolderSource(str(tmp_path), "train")
  with pytest.raises(FileNotFoundError, match="holds no .tar shards"):
    paired.WebDatasetSource(str(tmp_path), "train")
  with pytest.raises(ValueError, match="needs 'texts'"):
    text_data.record_texts(sources.digits("train")[0])


def test_caption_views_draw_among_the_captions(tokenizer):
  spec = text_data.CaptionViews(tokenizer.proto, 16)
  record = {"texts": ("the number seven in red", "a small red seven on the left")}
  seen = {tuple(spec.make(record, np.random.default_rng(s), None)["tokens"]) for s in range(20)}
  assert len(seen) == 2
  out = spec.make(record, np.random.default_rng(0), None)
  views.check_example(spec.fields(), dict(out, label=np.int32(0)))


# --------------------------------------------------------------------------------- evaluation

def test_zero_shot_and_retrieval_maths():
  rng = np.random.default_rng(0)
  classes = np.linalg.qr(rng.normal(size=(16, 16)))[0][:4]           # 4 orthonormal classes
  labels = rng.integers(0, 4, 40)
  images = classes[labels] + 0.05 * rng.normal(size=(40, 16))
  images /= np.linalg.norm(images, axis=1, keepdims=True)
  assert zeroshot.zero_shot_top1(images, labels, classes) == 1.0
  assert zeroshot.zero_shot_top1(images, labels, classes[::-1]) < 0.5
  texts = images.copy()                     # each text embedding equals its image's
  r = zeroshot.retrieval(images, texts, np.eye(40, dtype=bool))
  assert r["i2t_r1"] == 1.0 and r["t2i_r1"] == 1.0
  perm = rng.permutation(40)
  r = zeroshot.retrieval(images, texts[perm], np.eye(40, dtype=bool))
  assert r["i2t_r1"] < 0.3 and r["i2t_r10"] >= r["i2t_r5"] >= r["i2t_r1"]
  # Prompt ensembling: the mean over templates, renormalised.
  emb = {"a x": [1.0, 0.0], "the x": [0.0, 1.0]}
  got = zeroshot.class_embeddings(lambda ts: np.array([emb[t] for t in ts]), ["x"],
                                  ["a {}", "the {}"])
  np.testing.assert_allclose(got, [[2 ** -0.5, 2 ** -0.5]])


# --------------------------------------------------------------------------------- methods

def _short(name, tmp_path, **over):
  c = load_config(f"{name}_digits")
  c.update(total_steps=2, eval_every=2, checkpoint_every=2, batch_size=32, progress_bar=False)
  c.eval.update(max_examples=64, linear_epochs=2, batch_size=32)
  for k, v in over.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_methods_train_and_report_zero_shot(name, tmp_path):
  from ssljax import train
  c = _short(name, tmp_path)
  result = train.train_and_evaluate(c, str(tmp_path / name))
  for key in ("zeroshot_top1", "i2t_r1", "t2i_r10", "zeroshot_top1_random_init", "i2t_r5_random_init"):
    assert 0.0 <= result[key] <= 1.0, key
  with open(tmp_path / name / "eval.json") as f:
    assert "t2i_r1" in json.load(f)
  # The tokenizer is saved with the run, and is the one the captions were trained into.
  saved = text_data.Tokenizer.load(str(tmp_path / name / "tokenizer.model"))
  want = text_data.Tokenizer.train(paired.captioned_digits("train", 24).captions(), 128)
  assert saved.proto == want.proto


@pytest.mark.parametrize("fmt", ["captions", "webdataset"])
def test_siglip_trains_from_a_folder(fmt, tmp_path):
  from ssljax import train
  root = str(tmp_path / "data")
  for split in ("train", "val"):
    _write_pairs(root, split, 40, fmt)
  c = _short("siglip", tmp_path, **{"data.source": fmt, "data.path": root})
  result = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert 0.0 <= result["zeroshot_top1"] <= 1.0 and "i2t_r1" in result


def test_lit_locks_the_image_tower(tmp_path):
  """LiT from a pretraining workdir: the image tower's variables do not move, the text does."""
  from ssljax import train
  tower = load_config("simclr_digits")
  tower.update(total_steps=2, eval_every=2, checkpoint_every=2, batch_size=32, progress_bar=False)
  tower.eval.update(max_examples=64, linear_epochs=2, random_init=False)
  tower.data.update(source="captioned_digits", synthetic_size=24, image_size=24)
  tower.model.image_size = 24
  train.train_and_evaluate(tower, str(tmp_path / "tower"))
  # The tower may come from the workdir or from its export: the same features.
  from ssljax import export
  from ssljax.methods import lit
  export.export_backbone(str(tmp_path / "tower"), str(tmp_path / "tower_export"))
  x = np.random.default_rng(0).normal(size=(3, 24, 24, 3)).astype(np.float32)
  feats = [np.asarray(b.module.apply(b.variables, x, train=False)) for b in (
      lit.load_image_tower(str(tmp_path / "tower")),
      lit.load_image_tower(str(tmp_path / "tower_export")))]
  np.testing.assert_allclose(feats[0], feats[1], atol=1e-6)
  with pytest.raises(FileNotFoundError, match="expected an export folder"):
    lit.load_image_tower(str(tmp_path))
  c = _short("lit", tmp_path, **{"lit.image_tower": str(tmp_path / "tower")})
  c.eval.random_init = False
  trainer = train.Trainer(c, str(tmp_path / "lit"))
  state0, _ = trainer.initial_state()
  locked0 = jax.tree_util.tree_map(np.asarray, jax.device_get(state0.method_state["locked"]))
  text0 = jax.tree_util.tree_map(np.asarray, jax.device_get(state0.params["text"]))
  result = trainer.run()
  state = trainer.state
  assert set(state.params) == {"text", "log_scale"}
  jax.tree_util.tree_map(np.testing.assert_array_equal, locked0,
                         jax.device_get(state.method_state["locked"]))
  moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - np.asarray(b)).max()), text0,
                                 jax.device_get(state.params["text"]))
  assert max(jax.tree_util.tree_leaves(moved)) > 0
  # lit_digits standardises the locked features with running statistics of the batches seen.
  assert c.lit.feature_norm == "standardize"
  stats = jax.device_get(state.method_state["feature_stats"])
  assert float(stats["weight"]) == pytest.approx(1 - c.lit.feature_norm_momentum ** 2, rel=1e-4)
  assert 0.0 <= result["zeroshot_top1"] <= 1.0


def test_lit_feature_norm_uses_running_statistics():
  from ssljax.methods import lit
  rng = np.random.default_rng(0)
  d = 8
  stats = {"sum": np.zeros(d, np.float32), "sq": np.zeros(d, np.float32),
           "weight": np.float32(0.0)}
  a = (5.0 + 3.0 * rng.normal(size=(64, d))).astype(np.float32)
  # Before any batch: unchanged.
  np.testing.assert_array_equal(lit.normalize_features(a, stats, "standardize"), a)
  # One batch, bias-corrected: exactly that batch's mean and (population) std.
  one = lit.update_feature_stats(stats, a, 0.99)
  np.testing.assert_allclose(np.asarray(lit.normalize_features(a, one, "center")).mean(0), 0,
                             atol=1e-4)
  z = np.asarray(lit.normalize_features(a, one, "standardize"))
  np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(z.std(0), 1, atol=1e-3)
  # Two batches: the EMA weights the newer one by 1 - m, the older by m (renormalised).
  b = (-1.0 + rng.normal(size=(64, d))).astype(np.float32)
  two = lit.update_feature_stats(one, b, 0.9)
  want = (0.9 * 0.01 * a.mean(0) + 0.1 * b.mean(0)) / (0.9 * 0.01 + 0.1)
  np.testing.assert_allclose(np.asarray(two["sum"]) / np.asarray(two["weight"]), want,
                             rtol=1e-5)
  c = load_config("lit_digits")
  c.lit.image_tower = "/"
  c.lit.feature_norm = "whiten"
  with pytest.raises(config_lib.ConfigError, match="feature_norm='whiten'"):
    config_lib.validate(c)


def test_lit_needs_an_image_tower():
  c = load_config("lit_digits")
  with pytest.raises(config_lib.ConfigError, match=r"lit.image_tower=''"):
    config_lib.validate(c)
  c.lit.image_tower = "/nonexistent/run"
  with pytest.raises(config_lib.ConfigError, match="does not exist"):
    config_lib.validate(c)


def test_export_has_both_towers_and_the_tokenizer(tmp_path):
  """An exported SigLIP gives the trained run's image and text embeddings from files alone."""
  from safetensors.numpy import load_file
  import ssljax
  from ssljax import export, train
  from ssljax import workdir as workdir_lib
  c = _short("siglip", tmp_path)
  c.eval.random_init = False
  train.train_and_evaluate(c, str(tmp_path / "run"))
  export.export_backbone(str(tmp_path / "run"), str(tmp_path / "out"))
  keys = set(load_file(str(tmp_path / "out" / "text.safetensors")))
  assert {"log_t", "bias", "image_proj.dense.kernel", "text.pos_embedding"} <= keys
  assert load_file(str(tmp_path / "out" / "text.safetensors"))["log_t"].shape == ()   # 0-d kept
  model = ssljax.load_text_encoder(str(tmp_path / "out"))
  run = workdir_lib.open_run(str(tmp_path / "run"))
  texts = ["a small red seven on the left", "the number two in blue"]
  ids, mask = run.method.tokenizer.encode_batch(texts, 16)
  want_t = np.asarray(run.method.encode_text(run.params, run.method_state, ids, mask))
  np.testing.assert_allclose(model.encode_texts(texts), want_t, atol=1e-5)
  images = paired.captioned_digits("val", 24).images[:4].astype(np.float32) / 255.0
  images = (images - 0.5) / 0.5
  want_i = np.asarray(run.method.encode_image(run.params, run.method_state, images))
  np.testing.assert_allclose(model.encode_images(images), want_i, atol=1e-5)
  with pytest.raises(ValueError, match="without a text tower"):
    tower = load_config("simclr_digits")
    tower.update(total_steps=1, eval_every=1, checkpoint_every=1, batch_size=32, progress_bar=False)
    tower.eval.update(max_examples=32, linear_epochs=1, random_init=False)
    train.train_and_evaluate(tower, str(tmp_path / "img"))
    export.export_backbone(str(tmp_path / "img"), str(tmp_path / "img_out"))
    ssljax.load_text_encoder(str(tmp_path / "img_out"))


def test_tfds_captions_source(tmp_path):
  """A TFDS dataset with coco_captions' layout (a sequence of captions per image) and class
  names, prepared here as ArrayRecord and read back without TensorFlow."""
  tfds = pytest.importorskip("tensorflow_datasets")
  src = paired.captioned_digits("val", 24)

  class SsljaxTestCaptions(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Tensor(shape=(24, 24, 3), dtype=np.uint8),
          "captions": tfds.features.Sequence({"text": tfds.features.Text()}),
          "label": tfds.features.ClassLabel(names=list(paired.DIGIT_WORDS))}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for i in range(6):
        yield i, {"image": src.images[i], "captions": {"text": list(src.texts[i])},
                  "label": int(src.labels[i])}

  SsljaxTestCaptions(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  got = paired.TFDSCaptionsSource("ssljax_test_captions", "train", str(tmp_path), "captions/text")
  assert len(got) == 6 and got.class_names == paired.DIGIT_WORDS
  records = [got[i] for i in range(6)]
  order = sorted(range(6), key=lambda i: records[i]["texts"])   # TFDS shuffles the examples
  want = sorted(range(6), key=lambda i: src.texts[i])
  for g, w in zip(order, want):
    assert records[g]["texts"] == src.texts[w] and records[g]["label"] == src.labels[w]
    np.testing.assert_array_equal(records[g]["image"], src.images[w])
  with pytest.raises(ValueError, match="no text feature data.text_key='caption'"):
    paired.TFDSCaptionsSource("ssljax_test_captions", "train", str(tmp_path), "caption")


def test_evaluate_cli_zeroshot_and_retrieval(tmp_path):
  """`python -m ssljax.evaluate --protocol zeroshot,retrieval` on an image-text run gives the
  online evaluator's numbers; on an image run, one line naming what it needs."""
  from ssljax import train
  from ssljax.evaluate import cli
  c = _short("siglip", tmp_path)
  c.eval.random_init = False
  result = train.train_and_evaluate(c, str(tmp_path / "run"))
  rows = cli.main(["--workdir", str(tmp_path / "run"), "--protocol", "zeroshot,retrieval"])
  by = {r["protocol"]: r for r in rows}
  assert by["zeroshot"]["zeroshot_top1"] == pytest.approx(result["zeroshot_top1"], abs=1e-6)
  for key in ("i2t_r1", "i2t_r10", "t2i_r5"):
    assert by["retrieval"][key] == pytest.approx(result[key], abs=1e-6)
  with open(tmp_path / "run" / "eval.json") as f:
    assert {r["protocol"] for r in json.load(f)["evaluations"]} >= {"zeroshot", "retrieval"}


def test_zeroshot_protocol_on_an_image_run_is_one_line():
  from types import SimpleNamespace
  from ssljax.evaluate import protocols
  run = SimpleNamespace(evaluator=SimpleNamespace(zeroshot=None), workdir="/w",
                        config=SimpleNamespace(method="simclr"))
  for protocol in (protocols.zeroshot, protocols.retrieval):
    with pytest.raises(protocols.ProtocolError, match="needs an image-text method .* 'simclr'"):
      protocol(run)
