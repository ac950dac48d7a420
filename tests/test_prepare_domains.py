"""dasl-prepare with K = 3 domains: flags, examples against the raw CSVs, schema, stats, training."""
import collections
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dasl_tf import data
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf.prepare import PrepareConfig, PrepareError, prepare
from dasl_tf.prepare import splits

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "user_id,item_id,rating,timestamp"
T = 3
SUFFIXES = "abc"


def _rows(seed):
  """Per domain, ``(user, item, rating, time)`` rows: 12 users, distinct times, no duplicates.

  User u7 has no domain-C record and u11 domain-A records only.
  """
  rng = np.random.default_rng(seed)
  times = iter(rng.permutation(10000)[:600].tolist())
  rows = {d: [] for d in SUFFIXES}
  for u in range(12):
    for d in SUFFIXES:
      if (u == 7 and d == "c") or (u == 11 and d != "a"):
        continue
      items = rng.choice(15, size=int(rng.integers(4, 9)), replace=False)
      rows[d] += [(f"u{u}", f"{d}{k}", int(rng.integers(1, 6)), next(times)) for k in items]
  return rows


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  root = tmp_path_factory.mktemp("three")
  rows = _rows(4)
  paths = []
  for d in SUFFIXES:
    lines = [HEADER] + [",".join(map(str, row)) for row in rows[d]]
    (root / f"{d}.csv").write_text("\n".join(lines) + "\n")
    paths.append(str(root / f"{d}.csv"))
  both = [HEADER + ",category"] + [",".join(map(str, row)) + f",{c}"
                                   for d, c in zip(SUFFIXES, (1, 2, 4)) for row in rows[d]]
  (root / "all.csv").write_text("\n".join(both) + "\n")
  return rows, tuple(paths), str(root / "all.csv")


def _flags(**flags):
  return {"num_negatives": 4, "train_negatives": 2, "num_shards": 2, "history_length": T,
          **flags}


@pytest.fixture(scope="module")
def three(raw, tmp_path_factory):
  """A K = 3 dataset prepared from ``--inputs``, and its stats."""
  out = str(tmp_path_factory.mktemp("prepared") / "out")
  stats = prepare(PrepareConfig(inputs=raw[1], output_dir=out,
                                domain_names=("books", "movies", "music"), **_flags()))
  return out, stats


def _decoded(data_dir):
  """Every example as ``(user, domain, item, time, histories)``, raw ids; OOV is "<oov>"."""
  def vocab(name):
    return ["", "<oov>"] + open(os.path.join(data_dir, "vocab", name)).read().split()

  users = vocab("users.txt")
  items = [vocab(f"items_{d}.txt") for d in SUFFIXES]
  schema = F.DatasetSchema.load(data_dir)
  out = []
  for split in schema.splits:
    ds = data.make_dataset(data.split_files(data_dir, split), schema.feature_spec, 4096)
    for features, _ in ds:
      f = {k: v.numpy() for k, v in features.items()}
      for i in range(len(f[F.USER_ID])):
        domain = int(f[F.DOMAIN][i])
        out.append((users[f[F.USER_ID][i]], domain, items[domain][f[F.ITEM_ID][i]],
                    int(f[F.TIMESTAMP][i]),
                    tuple(tuple(items[d][k] for k in f[F.history_key(d)][i])
                          for d in range(len(SUFFIXES)))))
  return out


def _reference(rows, data_dir):
  """The same tuples from the CSV rows: per domain, the last T items strictly before the target."""
  vocab = [set(open(os.path.join(data_dir, "vocab", f"items_{d}.txt")).read().split())
           for d in SUFFIXES]
  by_user = collections.defaultdict(list)
  for domain, d in enumerate(SUFFIXES):
    for user, item, _, time in rows[d]:
      by_user[user].append((time, domain, item if item in vocab[domain] else "<oov>"))
  out = []
  for user, records in by_user.items():
    for time, domain, item in records:
      histories = []
      for d in range(len(SUFFIXES)):
        before = [i for t, dd, i in sorted(records) if dd == d and t < time][-T:]
        histories.append(tuple([""] * (T - len(before)) + before))
      out.append((user, domain, item, time, tuple(histories)))
  return out


def test_three_domains_from_inputs_hold_every_history(raw, three):
  data_dir, _ = three
  decoded = _decoded(data_dir)
  assert sorted(decoded) == sorted(_reference(raw[0], data_dir))
  assert {domain for _, domain, *_ in decoded} == {0, 1, 2}
  assert any(h[2] != ("",) * T for *_, h in decoded), "some hist_c holds items"


def test_three_domain_schema_and_stats(raw, three):
  data_dir, stats = three
  schema = F.DatasetSchema.load(data_dir)
  assert schema.domain_names == ("books", "movies", "music")
  assert schema.num_domains == schema.feature_spec.num_domains == 3
  sizes = [len(open(os.path.join(data_dir, "vocab", f"items_{d}.txt")).read().split()) + 2
           for d in SUFFIXES]
  assert schema.num_items == tuple(sizes) and schema.num_items_more == (sizes[2],)
  assert F.HIST_A in schema.feature_spec.shapes() and "hist_c" in schema.feature_spec.shapes()
  rows = raw[0]
  assert sorted(stats["domains"]) == ["A", "B", "C"]
  for key, d in zip("ABC", SUFFIXES):
    assert stats["domains"][key]["records"] == len(rows[d])
    assert stats["domains"][key]["users"] == len({r[0] for r in rows[d]})
  for split in stats["splits"].values():
    assert split["examples"] == split["domain_a"] + split["domain_b"] + split["domain_c"]
  assert (stats["users"], stats["overlap_users"], stats["users_only_a"], stats["users_only_b"],
          stats["users_only_c"]) == (12, 11, 1, 0, 0)
  assert stats["cold_start_users_c"] == 0
  pbtxt = open(os.path.join(data_dir, "schema.pbtxt")).read()
  assert 'name: "hist_c"' in pbtxt


def test_one_input_split_by_three_categories_gives_the_same_records(raw, three, tmp_path):
  out = str(tmp_path / "out")
  stats = prepare(PrepareConfig(input=raw[2], categories=("1", "2", "4"), output_dir=out,
                                domain_names=("books", "movies", "music"), **_flags()))
  assert stats["domains"]["C"]["source"] == f"{raw[2]} [category 4]"
  assert open(os.path.join(out, "schema.json")).read() == open(
      os.path.join(three[0], "schema.json")).read()
  for split in ("train", "validation", "test"):
    assert _records(out, split) == _records(three[0], split), split


def _records(data_dir, split):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(data_dir, split, "*")))
  return sorted(bytes(r.numpy()) for r in tf.data.TFRecordDataset(files))


def test_default_domain_names_follow_the_number_of_domains():
  config = PrepareConfig(inputs=("a", "b", "c", "d"), output_dir="o")
  assert config.domain_names == ("A", "B", "C", "D") and config.num_domains == 4
  assert config.domain_inputs == ("a", "b", "c", "d")
  two = PrepareConfig(input_a="a", input_b="b", output_dir="o")
  assert two.domain_names == ("A", "B") and two.domain_inputs == ("a", "b")
  assert PrepareConfig(input="x", categories=("1", "2", "3"),
                       output_dir="o").domain_categories == ("1", "2", "3")


@pytest.mark.parametrize("flags, message", [
    (dict(inputs=("a", "b", "c"), input_a="a"), "either --inputs or --input_a and --input_b"),
    (dict(inputs=("a",)), "--inputs needs at least two domains, got 1"),
    (dict(inputs=("a", "", "c")), "--inputs has an empty entry"),
    (dict(inputs=("a", "b", "c"), domain_names=("x", "y")),
     "--domain_names needs 3 names, one per domain, got 2"),
    (dict(input_a="a", input_b="b", domain_names=("x", "y", "z")), "--domain_names needs 2"),
    (dict(input="x", categories=("1", "2", "1")), "--categories names 1 more than once"),
    (dict(input="x", categories=("1",)), "--categories needs at least two domains"),
    (dict(input="x", categories=("1", "2"), category_a="1"),
     "either --categories or --category_a and --category_b"),
    (dict(input="x", inputs=("a", "b")), "either --input"),
    (dict(inputs=("a", "b"), categories=("1", "2")), "--categories chooses the domains of one"),
    (dict(inputs=("a", "b", "c"), item_features_a="i.csv"), "--item_features_a/--item_features_b"),
])
def test_bad_domain_flags_name_the_flag(flags, message):
  with pytest.raises(PrepareError, match=message):
    PrepareConfig(output_dir="o", **flags)


def test_an_empty_third_domain_is_named(raw, tmp_path):
  empty = tmp_path / "empty.csv"
  empty.write_text(HEADER + "\nu1,c1,0,5\n")
  with pytest.raises(PrepareError, match=r"domain C \(.*empty.csv\) has no valid record"):
    prepare(PrepareConfig(inputs=(*raw[1][:2], str(empty)), output_dir=str(tmp_path / "o"),
                          **_flags()))


def test_cold_start_users_of_three_domains_lose_one_of_their_domains():
  rng = np.random.default_rng(2)
  n = 30000
  ids = np.array([f"user-{k}" for k in range(n)], dtype=object)
  present = rng.random((3, n)) < 0.6
  held = splits.held_out_domains(ids, present[0], present[1], 0.3, 42, [present[2]])
  domains = present.sum(axis=0)
  assert (held[domains < 2] == splits.NO_DOMAIN).all(), "only users of 2+ domains are chosen"
  chosen = held >= 0
  assert abs(chosen.sum() / (domains >= 2).sum() - 0.3) < 0.015
  assert present[held[chosen], np.flatnonzero(chosen)].all(), "a held-out domain is the user's own"
  assert set(np.unique(held[chosen])) == {0, 1, 2}
  # Users of domains A and B only are chosen and held out as with two domains.
  only_ab = present[0] & present[1] & ~present[2]
  np.testing.assert_array_equal(
      held[only_ab], splits.held_out_domains(ids, present[0], present[1], 0.3, 42)[only_ab])


def test_two_domain_schema_json_has_no_k_domain_fields_and_k_domains_round_trip(tmp_path):
  two = json.loads(F.DatasetSchema().to_json())
  assert "num_items_more" not in two and "num_domains" not in two["feature_spec"]
  three = F.DatasetSchema(feature_spec=F.FeatureSpec(num_domains=3), num_items_more=(7,),
                          domain_names=("x", "y", "z"))
  three.save(str(tmp_path))
  assert F.DatasetSchema.load(str(tmp_path)) == three
  with pytest.raises(errors.DataError, match="key 'domain_names' must be a list of 3 strings"):
    F.DatasetSchema(feature_spec=F.FeatureSpec(num_domains=3), num_items_more=(7,))
  with pytest.raises(errors.DataError, match="key 'num_items_more' must hold 1 size"):
    F.DatasetSchema(feature_spec=F.FeatureSpec(num_domains=3), domain_names=("x", "y", "z"))


def test_training_reads_a_three_domain_dataset(three):
  from dasl_tf import run_inputs  # pylint: disable=g-import-not-at-top
  data_dir, _ = three
  data = run_inputs.TrainingData.from_data_dir(data_dir)
  assert data.schema.num_domains == 3 and data.train_files
  assert run_inputs.TrainingData.from_patterns([], [], [], data_dir).schema == data.schema
  assert data.schema.model_config().num_items == data.schema.num_items


def test_cli_takes_inputs_and_refuses_both_spellings(raw, tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  command = [sys.executable, "-m", "dasl_tf.pipelines.prepare", "--inputs", ",".join(raw[1]),
             "--output_dir", str(tmp_path / "o"), "--history_length", str(T), "--num_negatives",
             "4", "--train_negatives", "2"]
  proc = subprocess.run(command + ["--domain_names", "x,y,z"], capture_output=True, text=True,
                        env=env, cwd=REPO_ROOT)
  assert proc.returncode == 0, proc.stderr
  schema = F.DatasetSchema.load(str(tmp_path / "o"))
  assert schema.domain_names == ("x", "y", "z") and schema.num_domains == 3
  proc = subprocess.run(command + ["--input_a", raw[1][0], "--overwrite"], capture_output=True,
                        text=True, env=env, cwd=REPO_ROOT)
  assert proc.returncode == 2
  assert "dasl-prepare: error: give either --inputs or --input_a and --input_b" in proc.stderr
