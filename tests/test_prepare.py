"""dasl-prepare end to end: layout, schema, vocabularies, splits, side features, drivers, stats."""
import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dasl_tf import data
from dasl_tf import features as F
from dasl_tf import synthetic
from dasl_tf.prepare import PrepareConfig, PrepareError, prepare

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = synthetic.SyntheticConfig(num_users=40, num_items_a=150, num_items_b=150, seed=5)


@pytest.fixture(scope="module")
def tiny_raw(tmp_path_factory):
  return synthetic.generate(str(tmp_path_factory.mktemp("tiny")), TINY)


def _config(raw, output_dir, **flags):
  values = {"input_a": raw["input_a"], "input_b": raw["input_b"], "num_negatives": 10,
            "num_shards": 2}
  return PrepareConfig(output_dir=str(output_dir), **{**values, **flags})


def _examples(data_dir, split):
  """All examples of a split as sorted tuples of their features (order-free comparison)."""
  schema = F.DatasetSchema.load(str(data_dir))
  files = data.split_files(str(data_dir), split)
  ds = data.make_dataset(files, schema.feature_spec, 4096,
                         with_negatives=schema.feature_spec.num_negatives > 0 and split != "train",
                         train_negatives=-1 if split == "train" else 0)
  rows = []
  for features, label in ds:
    values = {k: v.numpy() for k, v in features.items()}
    for i in range(len(label)):
      rows.append((float(label[i]),) + tuple(
          tuple(np.ravel(values[k][i]).tolist()) for k in sorted(values)))
  return sorted(rows)


def test_fixture_layout_schema_vocab_and_stats(synthetic_data_dir):
  root = synthetic_data_dir
  schema = F.DatasetSchema.load(root)
  assert set(schema.splits) == {"train", "validation", "test"}
  assert schema.feature_spec.num_negatives == 99
  assert schema.feature_spec.num_train_negatives == 16
  assert schema.user_num_columns == ("age", "activity")
  assert schema.user_cat_columns == ("segment",)
  assert schema.item_num_columns == ("quality", "price")
  assert schema.item_cat_columns == ("genre",)
  for split, paths in schema.splits.items():
    assert all(os.path.exists(os.path.join(root, p)) for p in paths)
  users = open(os.path.join(root, "vocab", "users.txt")).read().split()
  assert schema.num_users == len(users) + 2 and users == sorted(users)
  items_a = open(os.path.join(root, "vocab", "items_a.txt")).read().split()
  assert schema.num_items_a == len(items_a) + 2
  assert os.path.exists(os.path.join(root, "vocab", "user_segment.txt"))
  stats = json.load(open(os.path.join(root, "stats.json")))
  total = sum(s["examples"] for s in stats["splits"].values())
  assert total == stats["domains"]["A"]["records"] + stats["domains"]["B"]["records"]
  assert stats["users"] == stats["overlap_users"] + stats["users_only_a"] + stats["users_only_b"]
  assert not glob.glob(root + ".*")  # no staging sibling is left


def test_examples_match_the_raw_log(synthetic_raw, synthetic_data_dir):
  """Every example's target, label and histories agree with the raw CSV (vocab decoded)."""
  root = synthetic_data_dir
  users = ["<pad>", "<oov>"] + open(os.path.join(root, "vocab", "users.txt")).read().split()
  items = [["<pad>", "<oov>"] + open(os.path.join(root, "vocab", f"items_{d}.txt")).read().split()
           for d in "ab"]
  log = {}
  for domain, key in enumerate(("input_a", "input_b")):
    for line in open(synthetic_raw[key]).read().split("\n")[1:]:
      if line:
        user, item, rating, time = line.split(",")
        log[(user, domain, item)] = (int(rating), int(time))
  schema = F.DatasetSchema.load(root)
  ds = data.make_dataset(data.split_files(root, "test"), schema.feature_spec, 64,
                         with_negatives=True)
  features, label = next(iter(ds))
  checked = 0
  for i in range(64):
    user = users[features[F.USER_ID][i]]
    domain = int(features[F.DOMAIN][i])
    negatives = features[F.NEGATIVES][i].numpy()
    touched = {it for (u, d, it) in log if u == user and d == domain}
    assert not touched & {items[domain][n] for n in negatives}
    if int(features[F.ITEM_ID][i]) == F.OOV_ID:
      continue  # an item first seen after the training records: not in the vocabulary
    checked += 1
    rating, time = log[(user, domain, items[domain][features[F.ITEM_ID][i]])]
    assert float(label[i]) == float(rating >= 4)
    for d, key in ((0, F.HIST_A), (1, F.HIST_B)):
      hist = features[key][i].numpy()
      assert (np.diff(hist > 0) >= 0).all(), "left padding"
      for item in hist[hist > F.OOV_ID]:
        assert log[(user, d, items[d][item])][1] < time
  assert checked > 32


def test_vocabularies_hold_the_training_records_only(synthetic_data_dir):
  """Every training target is in the vocabulary; evaluation-only items map to the OOV id."""
  schema = F.DatasetSchema.load(synthetic_data_dir)
  oov = {}
  for split in ("train", "test"):
    ds = data.make_dataset(data.split_files(synthetic_data_dir, split), schema.feature_spec, 4096)
    oov[split] = sum(int((f[F.ITEM_ID] == F.OOV_ID).numpy().sum()) for f, _ in ds)
  assert oov["train"] == 0 and oov["test"] > 0


def test_kfold_split_with_gzip_shards(tiny_raw, tmp_path):
  stats = prepare(_config(tiny_raw, tmp_path / "out", split="kfold", folds=3, compress=True))
  schema = F.DatasetSchema.load(str(tmp_path / "out"))
  assert sorted(schema.splits) == ["fold-0", "fold-1", "fold-2"]
  assert all(p.endswith(".tfrecord.gz") for paths in schema.splits.values() for p in paths)
  user_sets = [{row[-1] for row in _examples(tmp_path / "out", f"fold-{k}")} for k in range(3)]
  assert not (user_sets[0] & user_sets[1]) and not (user_sets[1] & user_sets[2])
  assert sum(len(s) for s in user_sets) == stats["users"]


def test_min_item_count_maps_rare_items_to_oov(tiny_raw, tmp_path):
  stats = prepare(_config(tiny_raw, tmp_path / "out", min_item_count=3))
  items_a = open(tmp_path / "out" / "vocab" / "items_a.txt").read().split()
  assert stats["domains"]["A"]["vocabulary_items"] == len(items_a) < stats["domains"]["A"]["items"]
  rows = _examples(tmp_path / "out", "train")
  # sorted feature keys: domain, hist_a, hist_b, item_id, user_id -> item_id is index 4.
  assert any(row[4] == (F.OOV_ID,) for row in rows)
  assert all(row[4][0] != F.PAD_ID for row in rows)


def test_side_feature_tables_absent_present_and_partial(tiny_raw, tmp_path):
  prepare(_config(tiny_raw, tmp_path / "none"))
  spec = F.DatasetSchema.load(str(tmp_path / "none")).feature_spec
  assert (spec.user_num_dim, spec.user_cat_dim, spec.item_num_dim, spec.item_cat_dim) == (0,) * 4

  partial_users = tmp_path / "users.csv"
  lines = open(tiny_raw["user_features"]).read().splitlines()
  partial_users.write_text("\n".join(lines[:11]) + "\nghost,1.0,2.0,s9\n")
  stats = prepare(_config(tiny_raw, tmp_path / "partial", user_features=str(partial_users),
                          item_features_b=tiny_raw["item_features_b"],
                          categorical_features=("price",)))
  schema = F.DatasetSchema.load(str(tmp_path / "partial"))
  assert schema.item_num_columns == ("quality",) and schema.item_cat_columns == ("price", "genre")
  coverage = stats["side_features"]["user"]["coverage"]["users"]
  assert coverage == {"ids_with_features": 10, "ids_without_features": 30,
                      "rows_with_unknown_id": 1}
  assert stats["side_features"]["item"]["coverage"]["items_a"]["ids_with_features"] == 0
  ds = data.make_dataset(data.split_files(str(tmp_path / "partial"), "train"),
                         schema.feature_spec, 10000)
  features, _ = next(iter(ds))
  known = features[F.USER_ID].numpy() < 2 + 40  # every user is in the vocabulary
  assert known.all()
  has_row = (features[F.USER_CAT].numpy()[:, 0] > 0)
  assert 0 < has_row.mean() < 1, "users without a row get the default category 0"
  assert (features[F.USER_NUM].numpy()[~has_row] == 0).all()
  item_a = features[F.DOMAIN].numpy() == 0
  assert (features[F.ITEM_CAT].numpy()[item_a] == 0).all()
  assert (features[F.ITEM_CAT].numpy()[~item_a] >= 2).all()


def test_existing_output_needs_overwrite_and_failure_leaves_nothing(tiny_raw, tmp_path):
  out = tmp_path / "out"
  prepare(_config(tiny_raw, out))
  with pytest.raises(PrepareError, match="already exists.*--overwrite"):
    prepare(_config(tiny_raw, out))
  prepare(_config(tiny_raw, out, overwrite=True, split="kfold", folds=3))
  assert sorted(os.listdir(out / "vocab")) == ["items_a.txt", "items_b.txt", "users.txt"]
  assert os.path.isdir(out / "fold-2") and not os.path.exists(out / "train")
  failed = tmp_path / "failed"
  with pytest.raises(ValueError, match="num_negatives"):
    prepare(_config(tiny_raw, failed, num_negatives=149))
  assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging or retired sibling is left


def _files_under(root):
  return {os.path.relpath(os.path.join(d, name), root): open(os.path.join(d, name)).read()
          for d, _, names in os.walk(root) for name in names}


def test_overwrite_never_replaces_a_directory_that_prepare_did_not_write(tiny_raw, tmp_path):
  """``--overwrite`` pointed at a user's directory (no schema.json) refuses and deletes nothing."""
  users = tmp_path / "home"
  (users / "thesis").mkdir(parents=True)
  (users / "thesis" / "chapter1.tex").write_text("years of work")
  (users / "notes.txt").write_text("keep me")
  before = _files_under(users)
  refusal = f"{users} exists but is not a prepared dataset written by dasl_tf"
  with pytest.raises(PrepareError, match=re.escape(refusal) + ".*no schema.json.*--overwrite"):
    prepare(_config(tiny_raw, users, overwrite=True))
  proc = subprocess.run([sys.executable, "-m", "dasl_tf.pipelines.prepare",
                         "--input_a", tiny_raw["input_a"], "--input_b", tiny_raw["input_b"],
                         "--output_dir", str(users), "--overwrite"],
                        capture_output=True, text=True, cwd=REPO_ROOT,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 2 and f"dasl-prepare: error: {refusal}" in proc.stderr, proc.stderr
  assert _files_under(users) == before
  assert sorted(os.listdir(tmp_path)) == ["home"]


def test_cli_runs_without_tensorflow(tiny_raw, tmp_path):
  """``python -m dasl_tf.pipelines.prepare`` never imports TensorFlow, GZIP shards included."""
  flags = ["--input_a", tiny_raw["input_a"], "--input_b", tiny_raw["input_b"],
           "--user_features", tiny_raw["user_features"],
           "--item_features_a", tiny_raw["item_features_a"],
           "--item_features_b", tiny_raw["item_features_b"],
           "--num_negatives", "10", "--num_shards", "2"]
  script = textwrap.dedent("""
      import sys
      import dasl_tf.pipelines.prepare
      assert "tensorflow" not in sys.modules, "importing dasl_tf.pipelines.prepare imported TensorFlow"
      flags = sys.argv[1:]
      for extra in ([], ["--compress"]):  # the second run replaces the first's output
        sys.argv = ["dasl-prepare", *flags, *extra]
        try:
          dasl_tf.pipelines.prepare.main()
        except SystemExit as e:  # app.run exits when done
          assert e.code in (None, 0), e.code
      leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras"))
      assert not leaked, leaked
      print("no tensorflow")
      """)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-c", script, *flags, "--output_dir",
                         str(tmp_path / "cli"), "--overwrite"],
                        capture_output=True, text=True, env=env, cwd=REPO_ROOT)
  assert proc.returncode == 0, proc.stderr
  assert "no tensorflow" in proc.stdout
  schema = F.DatasetSchema.load(str(tmp_path / "cli"))
  assert all(p.endswith(".tfrecord.gz") for paths in schema.splits.values() for p in paths)
  reference = tmp_path / "reference"
  stats = prepare(_config(tiny_raw, reference, user_features=tiny_raw["user_features"],
                          item_features_a=tiny_raw["item_features_a"],
                          item_features_b=tiny_raw["item_features_b"]))
  for split in ("train", "validation", "test"):
    rows = _examples(reference, split)
    assert len(rows) == stats["splits"][split]["examples"] > 0, split
    assert _examples(tmp_path / "cli", split) == rows


def test_a_non_finite_numeric_side_feature_is_an_error_not_a_category(tiny_raw, tmp_path):
  """``inf`` in a numeric column must not turn the column categorical, nor become a value."""
  users = tmp_path / "users.csv"
  lines = open(tiny_raw["user_features"]).read().splitlines()
  header = lines[0].split(",")
  numeric = next(k for k, name in enumerate(header) if k and lines[1].split(",")[k]
                 .replace(".", "", 1).isdigit())
  row = lines[3].split(",")
  row[numeric] = "inf"
  lines[3] = ",".join(row)
  users.write_text("\n".join(lines) + "\n")
  with pytest.raises(PrepareError, match=rf"users.csv:4: column '{header[numeric]}' must be a "
                                         "finite number, got 'inf'"):
    prepare(_config(tiny_raw, tmp_path / "out", user_features=str(users)))
  assert not (tmp_path / "out").exists()


def test_tensorflow_metadata_schema_and_statistics_describe_the_examples(tiny_raw, tmp_path):
  """schema.pbtxt and stats.pb parse as TFMD protos and agree with schema.json and the shards."""
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=g-import-not-at-top
  out = tmp_path / "out"
  stats = prepare(_config(tiny_raw, out, user_features=tiny_raw["user_features"]))
  schema = F.DatasetSchema.load(str(out))
  proto = text_format.Parse((out / "schema.pbtxt").read_text(), schema_pb2.Schema())
  features = {f.name: f for f in proto.feature}
  assert set(features) == set(schema.feature_spec.shapes(
      with_label=True, with_negatives=True, with_train_negatives=True, with_timestamp=True))
  assert F.TIMESTAMP in features and features[F.TIMESTAMP].type == schema_pb2.INT
  assert [d.size for d in features["hist_a"].shape.dim] == [schema.feature_spec.history_length]
  assert (features["user_id"].int_domain.min, features["user_id"].int_domain.max) == (
      0, schema.num_users - 1)
  assert features["hist_b"].int_domain.max == schema.num_items_b - 1
  assert features["label"].type == schema_pb2.FLOAT
  assert features["negatives"].presence.min_fraction == 0.0
  assert features["user_num"].presence.min_fraction == 1.0
  statistics = statistics_pb2.DatasetFeatureStatisticsList.FromString(
      (out / "stats.pb").read_bytes())
  by_split = {d.name: d for d in statistics.datasets}
  for split in ("train", "validation", "test"):
    rows = _examples(out, split)
    assert by_split[split].num_examples == len(rows) == stats["splits"][split]["examples"]
    label = next(f for f in by_split[split].features if f.path.step == ["label"])
    assert label.num_stats.mean == pytest.approx(
        stats["splits"][split]["positives"] / len(rows))
  train_features = {f.path.step[0] for f in by_split["train"].features}
  assert "train_negatives" in train_features and "negatives" not in train_features
