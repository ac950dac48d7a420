"""dasl-prepare's global time split, cold-start users and the ``timestamp`` feature.

References are written here with NumPy and plain Python from the raw CSV
rows: the cut quantiles, each record's split and time, and what holding a
user's domain out must change (and must leave as it is).
"""
import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dasl_tf import data
from dasl_tf import features as F
from dasl_tf.prepare import PrepareConfig, PrepareError, prepare
from dasl_tf.prepare import splits

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "user_id,item_id,rating,timestamp"
# Few distinct times, so that many records (of both domains) share a time, at the cuts too.
DAY = 86400
T0 = 1_600_000_000


def _log(seed, num_users=60, distinct_times=25):
  """Raw rows ``(user, domain, item, rating, time)``: unique (user, domain, item), many ties."""
  rng = np.random.default_rng(seed)
  rows = []
  for u in range(num_users):
    kind = u % 3  # 0: both domains, 1: A only, 2: both (B-heavy); every third user in one domain
    for domain, count in ((0, rng.integers(2, 12) if kind != 2 else rng.integers(1, 4)),
                          (1, 0 if kind == 1 else rng.integers(2, 12))):
      items = rng.choice(40, size=count, replace=False)
      for item in items:
        rows.append((f"u{u:03d}", domain, f"{'ab'[domain]}{item:02d}", int(rng.integers(1, 6)),
                     T0 + DAY * int(rng.integers(0, distinct_times))))
  return rows


def _write(tmp_path, rows, with_times=True):
  paths = {}
  for domain, key in enumerate(("input_a", "input_b")):
    lines = [HEADER if with_times else "user_id,item_id,rating"]
    lines += [f"{u},{i},{r},{t}" if with_times else f"{u},{i},{r}"
              for u, d, i, r, t in rows if d == domain]
    path = tmp_path / f"{key}.csv"
    path.write_text("\n".join(lines) + "\n")
    paths[key] = str(path)
  return paths


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  rows = _log(seed=3)
  return rows, _write(tmp_path_factory.mktemp("raw"), rows)


def _run(paths, output_dir, **flags):
  values = {"num_negatives": 0, "train_negatives": 0, "num_shards": 1, **paths, **flags}
  return prepare(PrepareConfig(output_dir=str(output_dir), **values))


def _decoded(data_dir):
  """Every example as ``(split, user, domain, item, label, timestamp, hist_a, hist_b)``, raw ids.

  Padding decodes to "" and the OOV id to "<oov>".
  """
  def vocab(name):
    return ["", "<oov>"] + open(os.path.join(data_dir, "vocab", name)).read().split()

  users, items = vocab("users.txt"), (vocab("items_a.txt"), vocab("items_b.txt"))
  schema = F.DatasetSchema.load(str(data_dir))
  out = []
  for split in schema.splits:
    ds = data.make_dataset(data.split_files(str(data_dir), split), schema.feature_spec, 4096)
    for features, label in ds:
      f = {k: v.numpy() for k, v in features.items()}
      for i in range(len(label)):
        domain = int(f[F.DOMAIN][i])
        out.append((split, users[f[F.USER_ID][i]], domain, items[domain][f[F.ITEM_ID][i]],
                    float(label[i]), int(f[F.TIMESTAMP][i]),
                    tuple(items[0][k] for k in f[F.HIST_A][i]),
                    tuple(items[1][k] for k in f[F.HIST_B][i])))
  return out


# --- global time split ---------------------------------------------------------------------


@pytest.mark.parametrize("validation_fraction, test_fraction", [(0.1, 0.1), (0.15, 0.3),
                                                                (0.0, 0.2)])
def test_time_cuts_are_numpy_quantiles_and_ties_go_to_the_later_split(validation_fraction,
                                                                      test_fraction):
  rng = np.random.default_rng(0)
  for distinct in (rng.choice(10**6, 23, replace=False), rng.choice(10**6, 1000, replace=False)):
    assert splits.time_cuts(np.sort(distinct), np.ones(len(distinct), np.int64),
                            validation_fraction, test_fraction) == (
        np.quantile(distinct, 1 - test_fraction - validation_fraction, method="higher"),
        np.quantile(distinct, 1 - test_fraction, method="higher"))
  times = rng.integers(0, 40, 997) * 10  # about 25 records per time
  values, counts = np.unique(times, return_counts=True)
  cuts = splits.time_cuts(values, counts, validation_fraction, test_fraction)
  assert cuts == (np.quantile(times, 1 - test_fraction - validation_fraction, method="higher"),
                  np.quantile(times, 1 - test_fraction, method="higher"))
  split = splits.global_split(times, *cuts)
  assert (split[times == cuts[1]] == splits.TEST).all()
  assert (split[times == cuts[0]] == (splits.TEST if validation_fraction == 0
                                      else splits.VALIDATION)).all()
  assert times[split == splits.TRAIN].max() < cuts[0] <= times[split != splits.TRAIN].min()
  assert times[split != splits.TEST].max() < cuts[1] <= times[split == splits.TEST].min()
  assert abs((split == splits.TEST).mean() - test_fraction) < 0.05


def test_global_split_never_puts_a_record_at_or_after_a_test_time_in_training(raw, tmp_path):
  rows, paths = raw
  stats = _run(paths, tmp_path / "out", split="global_time", validation_fraction=0.15,
               test_fraction=0.2)
  times = np.array([t for *_, t in rows])
  reference = (int(np.quantile(times, 1 - 0.2 - 0.15, method="higher")),
               int(np.quantile(times, 1 - 0.2, method="higher")))
  assert (times == reference[1]).sum() > 5, "the data must have ties at the test cut"
  schema = F.DatasetSchema.load(str(tmp_path / "out"))
  assert (schema.split, schema.validation_cut, schema.test_cut) == ("global_time", *reference)
  assert (stats["split"], stats["validation_cut"], stats["test_cut"]) == (
      "global_time", *reference)
  assert schema.timestamp_unit == stats["timestamp_unit"] == "seconds"
  assert schema.feature_spec.has_timestamp
  examples = _decoded(tmp_path / "out")
  by_split = collections.defaultdict(list)
  for split, user, domain, _, _, timestamp, _, _ in examples:
    by_split[split].append((user, domain, timestamp))
  # Each record is in the split its raw time gives, with its raw time as ``timestamp``.
  expected = collections.defaultdict(list)
  for user, domain, _, _, t in rows:
    name = "test" if t >= reference[1] else "validation" if t >= reference[0] else "train"
    expected[name].append((user, domain, t))
  assert {k: sorted(v) for k, v in by_split.items()} == {k: sorted(v)
                                                         for k, v in expected.items()}
  train, validation, test = ([t for *_, t in by_split[s]] for s in ("train", "validation", "test"))
  assert max(train) < reference[0] <= min(validation)
  assert max(train + validation) < reference[1] <= min(test)
  # Histories cross the splits (a test example sees earlier training records), never the future.
  time_of = {(u, d, i): t for u, d, i, _, t in rows}
  crossed = 0
  for split, user, _, _, _, timestamp, hist_a, hist_b in examples:
    for domain, hist in ((0, hist_a), (1, hist_b)):
      for item in hist:
        if item not in ("", "<oov>"):
          assert time_of[(user, domain, item)] < timestamp
          crossed += split == "test" and time_of[(user, domain, item)] < reference[0]
  assert crossed > 0


def test_pseudo_times_without_a_time_column(tmp_path):
  """Douban-style logs: the split and ``timestamp`` use the pseudo-time (k + 0.5) / n, scaled."""
  rows = _log(seed=4, num_users=20)
  paths = _write(tmp_path, rows, with_times=False)
  stats = _run(paths, tmp_path / "out", split="global_time")
  assert stats["timestamp_unit"] == F.DatasetSchema.load(str(tmp_path / "out")).timestamp_unit
  assert stats["timestamp_unit"] == "pseudo_time"
  expected = []
  for user in sorted({r[0] for r in rows}):
    for domain in (0, 1):
      own = [r for r in rows if r[0] == user and r[1] == domain]  # file order
      expected += [(user, domain, round((k + 0.5) / len(own) * 10**12)) for k in range(len(own))]
  examples = _decoded(tmp_path / "out")
  assert sorted((u, d, t) for _, u, d, _, _, t, _, _ in examples) == sorted(expected)
  test_cut = np.quantile([t for *_, t in expected], 0.9, method="higher")
  assert stats["test_cut"] == test_cut
  assert all((split == "test") == (t >= test_cut) for split, _, _, _, _, t, _, _ in examples)


def test_make_dataset_parses_the_timestamp_only_when_the_data_has_it(raw, tmp_path):
  _, paths = raw
  _run(paths, tmp_path / "out")
  root = str(tmp_path / "out")
  schema = F.DatasetSchema.load(root)
  files = data.split_files(root, "train")
  features, _ = next(iter(data.make_dataset(files, schema.feature_spec, 8)))
  assert features[F.TIMESTAMP].dtype == np.int64 and tuple(features[F.TIMESTAMP].shape) == (8,)
  assert F.TIMESTAMP not in next(iter(data.make_dataset(files, schema.feature_spec, 8,
                                                        with_timestamp=False)))[0]
  # A schema.json of an older dasl-prepare (no timestamp, no split facts) still loads.
  old = json.loads(schema.to_json())
  for key in ("split", "validation_cut", "test_cut", "timestamp_unit"):
    del old[key]
  del old["feature_spec"]["has_timestamp"]
  older = F.DatasetSchema.from_json(json.dumps(old))
  assert not older.feature_spec.has_timestamp and older.split == ""
  assert F.TIMESTAMP not in next(iter(data.make_dataset(files, older.feature_spec, 8)))[0]
  assert F.TIMESTAMP not in schema.feature_spec.shapes(with_label=False)
  assert F.TIMESTAMP not in schema.feature_spec.tensor_specs()


# --- cold-start users ----------------------------------------------------------------------


def test_held_out_domains_choose_the_share_of_overlap_users_by_id_alone():
  rng = np.random.default_rng(1)
  ids = np.array([f"user-{k}" for k in range(20000)], dtype=object)
  in_a, in_b = rng.random(20000) < 0.8, rng.random(20000) < 0.7
  held = splits.held_out_domains(ids, in_a, in_b, 0.3, seed=42)
  assert set(np.unique(held)) == {splits.NO_DOMAIN, 0, 1}
  assert (held[~(in_a & in_b)] == splits.NO_DOMAIN).all(), "only overlap users are chosen"
  overlap = (in_a & in_b).sum()
  assert abs((held >= 0).sum() / overlap - 0.3) < 0.015
  assert abs((held == 0).sum() / (held >= 0).sum() - 0.5) < 0.03
  order = rng.permutation(20000)  # a user's choice depends on its id, not on its place
  np.testing.assert_array_equal(
      splits.held_out_domains(ids[order], in_a[order], in_b[order], 0.3, seed=42), held[order])
  assert not np.array_equal(splits.held_out_domains(ids, in_a, in_b, 0.3, seed=43), held)
  assert (splits.held_out_domains(ids, in_a, in_b, 0.0, seed=42) == splits.NO_DOMAIN).all()
  assert (splits.held_out_domains(ids, in_a, in_b, 1.0, seed=42)[in_a & in_b] >= 0).all()


@pytest.mark.parametrize("split", ["temporal", "global_time"])
def test_cold_start_users_hide_a_whole_domain_and_nothing_else(raw, tmp_path, split):
  rows, paths = raw
  plain_stats = _run(paths, tmp_path / "plain", split=split)
  stats = _run(paths, tmp_path / "cold", split=split, cold_start_users=0.5)
  plain, cold = _decoded(tmp_path / "plain"), _decoded(tmp_path / "cold")
  domains_of = collections.defaultdict(set)
  for user, domain, *_ in rows:
    domains_of[user].add(domain)
  users = sorted(domains_of)
  held = dict(zip(users, splits.held_out_domains(
      np.array(users, dtype=object), np.array([0 in domains_of[u] for u in users]),
      np.array([1 in domains_of[u] for u in users]), 0.5, seed=42).tolist()))
  chosen = {u: d for u, d in held.items() if d != splits.NO_DOMAIN}
  assert (stats["cold_start_users_a"], stats["cold_start_users_b"]) == (
      sum(d == 0 for d in chosen.values()), sum(d == 1 for d in chosen.values()))
  assert plain_stats["cold_start_users_a"] == plain_stats["cold_start_users_b"] == 0
  assert all(domains_of[u] == {0, 1} for u in chosen)
  assert 0.3 < len(chosen) / stats["overlap_users"] < 0.7 and min(
      stats["cold_start_users_a"], stats["cold_start_users_b"]) > 0
  # Chosen users: no record of the held-out domain in train or validation, as target or in a
  # history; every one of them in test.
  for split_name, user, domain, _, _, _, hist_a, hist_b in cold:
    if user in chosen and split_name != "test":
      assert domain != chosen[user]
      assert set((hist_a, hist_b)[chosen[user]]) == {""}
  for user, d in chosen.items():
    test_records = sum(1 for s, u, dom, *_ in cold if u == user and dom == d and s == "test")
    assert test_records == sum(1 for u, dom, *_ in rows if u == user and dom == d) > 0
  # Everything else is what the plain split gives: the plain examples, with the held-out
  # domain's records moved to test and its history emptied in the other domain's examples,
  # are the cold-start examples (items the training records no longer hold become OOV).
  vocabularies = [set(open(tmp_path / "cold" / "vocab" / f"items_{d}.txt").read().split())
                  for d in "ab"]

  def known(item, domain):
    return item if item in ("", "<oov>") or item in vocabularies[domain] else "<oov>"

  expected = []
  for split_name, user, domain, item, label, timestamp, hist_a, hist_b in plain:
    hist = [tuple(known(i, d) for i in h) for d, h in ((0, hist_a), (1, hist_b))]
    if user in chosen:
      if domain == chosen[user]:
        split_name = "test"
      else:
        hist[chosen[user]] = ("",) * len(hist_a)
    expected.append((split_name, user, domain, known(item, domain), label, timestamp, *hist))
  assert sorted(cold) == sorted(expected)
  changed = sum(1 for s, u, d, *_ in plain if u in chosen and d == chosen[u] and s != "test")
  assert changed > 10, "the held-out records must have been in train or validation before"


# --- flags -----------------------------------------------------------------------------------


def test_bad_split_flags_are_refused():
  base = {"input_a": "a", "input_b": "b", "output_dir": "o"}
  with pytest.raises(PrepareError, match=r"--cold_start_users=0.2 needs --split temporal or "
                                         "global_time"):
    PrepareConfig(split="kfold", cold_start_users=0.2, **base)
  for bad in (-0.1, 1.5, float("nan")):
    with pytest.raises(PrepareError, match=rf"--cold_start_users={bad!r} is out of range"):
      PrepareConfig(cold_start_users=bad, **base)
  with pytest.raises(PrepareError, match="leaves nothing to train on"):
    PrepareConfig(split="global_time", validation_fraction=0.5, test_fraction=0.5, **base)
  assert PrepareConfig(split="global_time", **base).split_names == (
      "train", "validation", "test")


@pytest.mark.parametrize("flags, message", [
    (["--split", "kfold", "--cold_start_users", "0.2"],
     "dasl-prepare: error: --cold_start_users=0.2 needs --split temporal or global_time"),
    (["--cold_start_users", "2"], "dasl-prepare: error: --cold_start_users=2.0 is out of range"),
    (["--split", "sideways"], "dasl-prepare: error: flag --split=sideways: value should be one of"),
])
def test_cli_reports_bad_split_flags_before_writing(raw, tmp_path, flags, message):
  _, paths = raw
  command = [sys.executable, "-m", "dasl_tf.pipelines.prepare", "--input_a", paths["input_a"],
             "--input_b", paths["input_b"], "--output_dir", str(tmp_path / "o"), *flags]
  proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode != 0 and message in proc.stderr, proc.stderr
  assert os.listdir(tmp_path) == []
