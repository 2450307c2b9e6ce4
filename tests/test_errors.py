"""One-line errors: every bad input ends a command with exactly one line on stderr that names the
problem, a non-zero exit code and no traceback (README.md "Errors" lists the same cases).

Each case runs the real command (`python -m ssljax.main`, `ssljax.evaluate`, `ssljax.export`,
`ssljax.finetune`, `ssljax.plan`) in a subprocess. All of them run in one module fixture, three at
a time, while a 3-step tiny run trains the workdir the checkpoint cases need; each case is then its
own test.
Almost every case fails before JAX compiles anything.
"""
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

TINY_CONFIG = f"""
import sys
sys.path.insert(0, {TESTS!r})
from conftest import make_tiny_config

def get_config():
  c = make_tiny_config()
  c.total_steps, c.checkpoint_every = 3, 3
  return c
"""

MAIN = ("ssljax.main", "--config", "simclr_digits", "--workdir", "{tmp}/w")
TINY = ("ssljax.main", "--config", "{tmp}/tiny.py", "--workdir", "{tmp}/w")

# name -> (command and arguments, regex the one stderr line must match, exit code)
CASES = {
    # Command line and config file.
    "unknown_override_key": (MAIN + ("--config.batch_sise=64",),
                             r"unknown config key 'batch_sise'.*did you mean 'batch_size'\?", 2),
    "unknown_nested_key": (MAIN + ("--config.optimizer.base_lrr=0.1",),
                           r"unknown config key 'optimizer.base_lrr'.*'optimizer.base_lr'", 2),
    "override_in_a_flagfile": (MAIN + ("--flagfile={tmp}/flags.txt",),
                               r"unknown config key 'batch_sise'.*did you mean 'batch_size'\?", 2),
    "missing_flagfile": (MAIN + ("--flagfile={tmp}/nope.txt",), r"nope.txt", 2),
    "override_wrong_type": (MAIN + ("--config.total_steps=1.5",),
                            r"--config.total_steps=1.5 is a float; expected an integer", 2),
    "override_malformed": (MAIN + ("--config.simclr.proj_hidden_dims=(32,",),
                           r"'\(32,' is not a Python literal; expected a tuple", 2),
    "override_bad_bool": (MAIN + ("--config.progress_bar=maybe",),
                          r"--config.progress_bar='maybe': expected true or false", 2),
    "override_of_a_block": (MAIN + ("--config.optimizer=adam",),
                            r"--config.optimizer is a block of keys", 2),
    "unknown_method": (MAIN + ("--config.method=simclrr",),
                       r"config.method='simclrr'; expected one of \(.*'simclr'", 2),
    "unknown_backbone": (MAIN + ("--config.model.name=vitt",),
                         r"config.model.name='vitt'; expected one of", 2),
    "unknown_data_source": (MAIN + ("--config.data.source=imagenet",),
                            r"config.data.source='imagenet'; expected one of", 2),
    "bad_choice": (MAIN + ("--config.data.on_bad_image=ignore",),
                   r"config.data.on_bad_image='ignore'; expected one of \('fail', 'skip'\)", 2),
    "non_positive": (MAIN + ("--config.eval.knn_k=0",), r"config.eval.knn_k=0; expected a positive", 2),
    "config_file_missing": (("ssljax.main", "--config", "{tmp}/nope.py", "--workdir", "{tmp}/w"),
                            r"config file '.*/nope.py' does not exist", 2),
    "unknown_config_name": (("ssljax.main", "--config", "simclr_digit", "--workdir", "{tmp}/w"),
                            r"'simclr_digit' is neither a file nor a shipped config \(nearest: "
                            r"simclr_digits", 2),
    "config_without_get_config": (("ssljax.main", "--config", "{tmp}/no_get_config.py",
                                   "--workdir", "{tmp}/w"),
                                  r"no_get_config.py' does not define get_config\(\)", 2),
    "config_syntax_error": (("ssljax.main", "--config", "{tmp}/syntax.py", "--workdir", "{tmp}/w"),
                            r"syntax.py' has a syntax error at line 2", 2),
    "missing_workdir_flag": (("ssljax.main", "--config", "simclr_digits"),
                             r"--config and --workdir are required", 2),
    "unknown_flag": (MAIN + ("--bogus=1",), r"Unknown command line flag 'bogus'", 2),
    "stray_argument": (MAIN + ("extra",), r"unexpected arguments \['extra'\]", 2),
    # Mesh and devices (8 CPU devices, as the rest of the tests).
    "mesh_does_not_divide_batch": (MAIN + ("--config.batch_size=12",),
                                   r"batch_size=12 is not divisible by the data-parallel size 8", 2),
    "mesh_wrong_device_count": (MAIN + ("--config.mesh.data=3",),
                                r"multiplies to 3 devices but 8 are available", 2),
    # Workdir and data.
    "unwritable_workdir": (("ssljax.main", "--config", "simclr_digits", "--workdir",
                            "{tmp}/afile/run"), r"workdir '.*afile/run' is not writable", 2),
    "image_folder_without_val": (MAIN + ("--config.data.source=image_folder",
                                         "--config.data.path={tmp}/noval"),
                                 r"config.data.path='.*noval' has no 'val' sub-folder", 2),
    "image_folder_missing": (MAIN + ("--config.data.source=image_folder",
                                     "--config.data.path={tmp}/nowhere"),
                             r"config.data.path='.*nowhere' does not exist", 2),
    "corrupt_image": (MAIN + ("--config.data.source=image_folder", "--config.data.path={tmp}/imgs",
                              "--config.data.image_size=8"),
                      r"cannot read image '.*imgs/train/a/00.png'.*data.on_bad_image='fail'.*"
                      r"--config.data.on_bad_image=skip", 1),
    "tfds_dataset_missing": (MAIN + ("--config.data.source=tfds", "--config.data.tfds_name=no_such_ds",
                                     "--config.data.path={tmp}"),
                             r"TFDS dataset data.tfds_name='no_such_ds' not found", 1),
    "tfds_split_missing": (MAIN + ("--config.data.source=tfds", "--config.data.tfds_name=ssljax_test_shapes",
                                   "--config.data.path={tfds}", "--config.data.train_split=validation",
                                   "--config.data.image_size=8"),
                           r"TFDS dataset 'ssljax_test_shapes' has no split 'validation'; expected one "
                           r"of \['test', 'train'\]", 1),
    "batch_larger_than_the_data": (MAIN + ("--config.data.source=tfds", "--config.data.path={tfds}",
                                           "--config.data.tfds_name=ssljax_test_shapes",
                                           "--config.data.eval_split=test"),
                                   r"the train split has 64 examples, fewer than the global batch "
                                   r"size 128", 1),
    # Opening a pretraining workdir: evaluate, export, fine-tune.
    "evaluate_not_a_workdir": (("ssljax.evaluate", "--workdir", "{tmp}"),
                               r"config.json does not exist; expected a workdir", 1),
    "evaluate_unknown_protocol": (("ssljax.evaluate", "--workdir", "{run}", "--protocol", "knn,knm"),
                                  r"--protocol 'knm'; expected one of", 1),
    "evaluate_missing_step": (("ssljax.evaluate", "--workdir", "{run}", "--step", "4"),
                              r"no checkpoint at step 4 in .*; available steps: \[3\]", 1),
    "evaluate_other_model": (("ssljax.evaluate", "--workdir", "{other}"),
                             r"checkpoint at step 3 .* was written by a different model", 1),
    "export_no_checkpoint": (("ssljax.export", "--workdir", "{fresh}", "--out", "{tmp}/o"),
                             r"no checkpoint in .*fresh/checkpoints; train first", 1),
    "export_unwritable_out": (("ssljax.export", "--workdir", "{run}", "--out", "{tmp}/afile/o"),
                              r"cannot write '.*afile/o': Not a directory", 1),
    "plan_unknown_override_key": (("ssljax.plan", "--config", "simclr_digits",
                                   "--config.batch_sise=64"),
                                  r"unknown config key 'batch_sise'.*did you mean 'batch_size'", 2),
    "export_missing_out": (("ssljax.export", "--workdir", "{run}"),
                           r"--workdir and --out are required", 1),
    "finetune_not_a_workdir": (("ssljax.finetune", "--workdir", "{tmp}"),
                               r"config.json does not exist", 2),
    "finetune_bad_crop_scale": (("ssljax.finetune", "--workdir", "{run}", "--crop_scale=0.9,0.5"),
                                r"--crop_scale=0.9,0.5; expected 0 < lo <= hi <= 1", 2),
    "main_checkpoint_of_another_model": (
        TINY[:-1] + ("{other_main}", "--config.model.width=64", "--config.allow_config_change=True"),
        r"checkpoint at step 3 .* was written by a different model", 2),
}
NEEDS_RUN = ("{run}", "{other}", "{fresh}", "{other_main}", "{tfds}")


def _fixtures(tmp: str) -> None:
  for split in ("train", "val"):
    os.makedirs(f"{tmp}/imgs/{split}/a")
    for i in range(20):
      Image.fromarray(np.full((12, 12, 3), i * 10, np.uint8)).save(f"{tmp}/imgs/{split}/a/{i:02d}.png")
  with open(f"{tmp}/imgs/train/a/00.png", "wb") as f:
    f.write(b"not a png")
  os.makedirs(f"{tmp}/noval/train/a")
  Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(f"{tmp}/noval/train/a/x.png")
  with open(f"{tmp}/afile", "w") as f:
    f.write("a file, not a directory")
  with open(f"{tmp}/no_get_config.py", "w") as f:
    f.write("from ssljax.config import base_config\nCONFIG = base_config('simclr', 'vit')\n")
  with open(f"{tmp}/syntax.py", "w") as f:
    f.write("def get_config():\n  return base_config(\n")
  with open(f"{tmp}/flags.txt", "w") as f:
    f.write("--config.total_steps=5\n--config.batch_sise=64\n")
  with open(f"{tmp}/tiny.py", "w") as f:
    f.write(TINY_CONFIG)


def _run(args, paths):
  args = [a.format(**paths) for a in args]
  proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                        cwd=paths["tmp"], timeout=300,
                        env=dict(os.environ, PYTHONUNBUFFERED="1", SSLJAX_HOST_MALLOC="0"))
  return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp("errors"))
  _fixtures(tmp)
  paths = dict(tmp=tmp, run=f"{tmp}/run", other=f"{tmp}/other", fresh=f"{tmp}/fresh",
               other_main=f"{tmp}/other_main", tfds=f"{tmp}/tfds")
  train = subprocess.Popen([sys.executable, "-m", "ssljax.main", "--config", f"{tmp}/tiny.py",
                            "--workdir", paths["run"]], cwd=tmp, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
  independent = [k for k, (args, _, _) in CASES.items()
                 if not any(n in a for a in args for n in NEEDS_RUN)]
  out = {}
  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    futures = {name: pool.submit(_run, CASES[name][0], paths) for name in independent}
    import test_tfds   # its 64-image TFDS dataset, written by TFDS's own builder (no TensorFlow)
    test_tfds.SsljaxTestShapes(data_dir=paths["tfds"], file_format="array_record").download_and_prepare()
    log, _ = train.communicate(timeout=600)
    assert train.returncode == 0, log[-3000:]
    # A workdir whose config.json says another width than its checkpoint; one without checkpoints.
    for name in ("other", "other_main"):
      shutil.copytree(paths["run"], paths[name])
    with open(f"{paths['other']}/config.json") as f:
      saved = json.load(f)
    saved["model"]["width"] = 64
    with open(f"{paths['other']}/config.json", "w") as f:
      json.dump(saved, f)
    os.makedirs(paths["fresh"])
    shutil.copy(f"{paths['run']}/config.json", paths["fresh"])
    for name in CASES:
      if name not in futures:
        futures[name] = pool.submit(_run, CASES[name][0], paths)
    for name, future in futures.items():
      out[name] = future.result()
  return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line(results, case):
  if case == "main_checkpoint_of_another_model":
    from ssljax.config import base_config
    if "allow_config_change" not in base_config():
      pytest.skip("needs config.allow_config_change (resume with a changed config)")
  _, pattern, code = CASES[case]
  rc, stdout, stderr = results[case]
  lines = stderr.strip().splitlines()
  assert rc == code, (rc, stderr[-3000:], stdout[-1000:])
  assert len(lines) == 1, stderr[-3000:]
  assert "Traceback" not in stderr + stdout
  assert re.search(pattern, lines[0]), lines[0]
  assert lines[0].startswith(("ssljax: ", "ssljax.evaluate: ", "ssljax.export: ",
                              "ssljax.finetune: ", "ssljax.plan: ")), lines[0]


def test_readme_errors_table_lists_the_cases():
  """README.md's "Errors" section has a row per kind of case tested here."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
  rows = [l for l in section.splitlines() if l.startswith("|") and "---" not in l][1:]
  assert len(rows) >= 20, len(rows)
  for needle in ("batch_sise", "get_config", "on_bad_image", "different model", "not writable",
                 "tfds_name", "val/", "data-parallel", "simclr_digit"):
    assert needle in section, needle
