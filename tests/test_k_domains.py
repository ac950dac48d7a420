"""DASL and its ablations on K = 3 domains: outputs, routing, a planted signal, dasl-train, exports."""
import json
import os
import subprocess
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import config_resolution
from dasl_tf import features as F
from dasl_tf import metrics as metrics_lib
from dasl_tf.layers import DualEmbedding, MultiDomainEmbedding
from dasl_tf.model_io import build_model
from dasl_tf.prepare import PrepareConfig, prepare
from tests import test_train_support as support

T = 3
K = 3
SIZES = (12, 14, 10)  # item vocabularies of domains A, B, C (reserved ids included)


def _config(variant="dasl", **overrides):
  values = dict(variant=variant, num_users=40, num_items_a=SIZES[0], num_items_b=SIZES[1],
                num_items_more=SIZES[2:], history_length=T, embedding_dim=8, gru_units=8,
                attention_dim=8, hidden_units=(8,), autoencoder_units=(8,),
                timestamp_unit="pseudo_time")
  values.update(overrides)
  return config_lib.ModelConfig(**values)


def _features(n=6, seed=0, train_negatives=0):
  """A batch of every domain: examples of domains 0, 1, 2, 0, 1, 2, ..."""
  rng = np.random.default_rng(seed)
  domain = np.arange(n) % K
  features = {F.USER_ID: rng.integers(2, 40, n), F.DOMAIN: domain,
              F.ITEM_ID: np.array([rng.integers(2, SIZES[d]) for d in domain])}
  for d in range(K):
    history = rng.integers(2, SIZES[d], (n, T))
    history[: n // 2, 0] = F.PAD_ID
    features[F.history_key(d)] = history
  if train_negatives:
    features[F.TRAIN_NEGATIVES] = np.stack(
        [rng.integers(2, SIZES[d], train_negatives) for d in domain])
  return {name: tf.constant(value, tf.int64) for name, value in features.items()}


@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_three_domain_model_gives_per_domain_outputs(variant):
  model = build_model(_config(variant))
  features = _features()
  assert model.domains == (0, 1, 2)
  assert sorted(model(features)) == ["logit_a", "logit_b", "logit_c"]
  ctr = model.predict_ctr(features)
  assert sorted(ctr) == ["ctr", "ctr_a", "ctr_b", "ctr_c"]
  own = np.choose(features[F.DOMAIN].numpy(), [ctr[f"ctr_{s}"].numpy() for s in "abc"])
  np.testing.assert_allclose(ctr["ctr"].numpy(), own)
  candidates = tf.constant([[2, 3, 4]] * 6, tf.int64)
  scores = model.score_candidates(features, candidates)
  assert scores.shape == (6, 3)
  for d in range(K):  # each example ranked by its own domain's head
    rows = np.flatnonzero(features[F.DOMAIN].numpy() == d)
    alone = model.score_candidates({k: tf.gather(v, rows) for k, v in features.items()},
                                   tf.gather(candidates, rows), domain=d)
    np.testing.assert_allclose(scores.numpy()[rows], alone.numpy(), rtol=1e-5, atol=1e-6)
  assert len(model.task.item_priors) == K and model.task.ctr_task(2).name == "ranking_c"


@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_training_logits_route_each_example_to_its_own_head(variant):
  model = build_model(_config(variant))
  features = _features(n=9, train_negatives=2)
  target, negatives = model.training_logits(features, training=False)
  candidates = tf.concat([features[F.ITEM_ID][:, None], features[F.TRAIN_NEGATIVES]], 1)
  domain = features[F.DOMAIN].numpy()
  for d in range(K):
    rows = np.flatnonzero(domain == d)
    expected = model.domain_outputs(features, candidates, d).numpy()[rows]
    np.testing.assert_allclose(target.numpy()[rows], expected[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(negatives.numpy()[rows], expected[:, 1:], rtol=1e-5, atol=1e-6)


def test_heads_read_every_other_domain_through_the_multi_domain_embedding():
  """Head D's input: u_D, M_{E->D} u_E and h_D, h_E of both other domains E (6 parts of d = 8)."""
  features = _features()
  model = build_model(_config(candidate_interactions=False))
  model(features)
  assert isinstance(model.dual_embedding, MultiDomainEmbedding)
  two = build_model(_config(num_items_more=()))
  assert isinstance(two.dual_embedding, DualEmbedding)
  parts, d = 2 * (K - 1) + 2, 8
  attention = model.dual_attention.output_dim
  for head in model.heads:
    assert head.first_layer.kernel.shape[0] == parts * d + attention + d
  single = build_model(_config("single_domain", candidate_interactions=False))
  single(features)
  assert single.heads[2].first_layer.kernel.shape[0] == 2 * d + attention + d


def test_every_domains_history_reaches_the_heads_and_only_as_the_variant_says():
  """Changing domain C's history changes heads A and B of DASL, not those of Single-Domain."""
  features = _features()
  changed = dict(features, **{F.history_key(2): tf.reverse(features[F.history_key(2)], [0])})
  for variant, moves in (("dasl", True), ("dasl_de", True), ("dasl_da", True),
                         ("single_domain", False)):
    model = build_model(_config(variant))
    before, after = model(features), model(changed)
    for name in ("logit_a", "logit_b"):
      differs = not np.allclose(before[name].numpy(), after[name].numpy())
      assert differs == moves, (variant, name)


@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_each_head_attends_over_every_domains_records(variant):
  """Dual Attention gets all K domains' records and masks for every head (eq. 6-7)."""
  model = build_model(_config(variant))
  features = _features()
  seen = []
  call = model.dual_attention.call

  def spy(inputs, heads=None):
    seen.append((dict(inputs), heads))
    return call(inputs, heads=heads)

  with mock.patch.object(model.dual_attention, "call", spy):
    model(features)
  assert sorted(heads[0] for _, heads in seen) == [0, 1, 2]
  for inputs, _ in seen:
    for d, suffix in enumerate("abc"):
      np.testing.assert_array_equal(inputs[f"mask_{suffix}"].numpy(),
                                    features[F.history_key(d)].numpy() != F.PAD_ID)
      assert inputs[f"records_{suffix}"].shape[1] == T
  weights = model.attention_weights(features)
  assert sorted(weights) == ["a", "b", "c"] and weights["a"].shape == (6, K * T)
  on_c = weights["a"].numpy()[:, 2 * T:].sum()
  assert (on_c == 0) == (variant == "single_domain")


def test_each_head_reads_every_other_domains_user_mapped_into_its_space():
  """Head D's parts after u_D are M_{E->D} u_E, E != D in order: MultiDomainEmbedding's [:, E, D]."""
  model = build_model(_config())
  features = _features()
  outputs = []
  call = model.dual_embedding.call

  def spy(inputs):
    outputs.append(call(inputs))
    return outputs[-1]

  with mock.patch.object(model.dual_embedding, "call", spy):
    context = model._user_context(features, training=False)  # pylint: disable=protected-access
  mapped = outputs[0].numpy()
  for d in range(K):
    others = [e for e in range(K) if e != d]
    for part, e in zip(context.parts[d][1:K], others):
      np.testing.assert_allclose(part.numpy(), mapped[:, e, d], rtol=1e-6)


def test_popularity_counts_every_domain():
  model = build_model(_config("popularity"))
  features = {F.ITEM_ID: tf.constant([2, 3, 3, 4], tf.int64),
              F.DOMAIN: tf.constant([0, 2, 2, 1], tf.int64)}
  model.adapt(tf.data.Dataset.from_tensors((features, tf.ones([4]))))
  logits = model.head_logits({}, tf.constant([[2, 3, 4]], tf.int64))
  clicks = [np.exp(logit.numpy()[0]) - 1 for logit in logits]
  np.testing.assert_allclose(clicks, [[1, 0, 0], [0, 0, 1], [0, 2, 0]], atol=1e-5)


def test_fresh_negatives_are_drawn_in_each_examples_own_domain():
  from dasl_tf import data as data_lib  # pylint: disable=g-import-not-at-top
  from dasl_tf import negatives  # pylint: disable=g-import-not-at-top
  sizes = (6, 40, 9)
  schema = F.DatasetSchema(feature_spec=F.FeatureSpec(num_domains=3, history_length=T),
                           num_users=10, num_items_a=sizes[0], num_items_b=sizes[1],
                           num_items_more=sizes[2:], domain_names=("x", "y", "z"))
  user = np.array([2, 3, 4, 2])
  domain = np.array([0, 1, 2, 2])
  item = np.array([2, 5, 3, 4])
  columns = data_lib.SplitColumns({F.USER_ID: user, F.DOMAIN: domain, F.ITEM_ID: item},
                                  np.ones(4, np.float32))
  sampler = negatives.NegativeSampler(negatives.TrainingSplit.from_columns(columns, schema), 4,
                                      "uniform", 0.75)
  rows = 600
  domains = np.arange(rows) % K
  histories = {F.history_key(d): np.full((rows, T), 5 + d) for d in range(K)}
  features = {F.USER_ID: np.full(rows, 2), F.DOMAIN: domains,
              F.ITEM_ID: np.full(rows, 2), **histories}
  out = sampler.draw({k: tf.constant(v, tf.int64) for k, v in features.items()},
                     tf.constant([1, 2], tf.int64))
  drawn, kept = out[F.TRAIN_NEGATIVES].numpy(), out[F.TRAIN_NEGATIVE_MASK].numpy() == 1.0
  for d in range(K):
    in_d = drawn[domains == d][kept[domains == d]]
    assert in_d.size and in_d.min() >= 2 and in_d.max() < sizes[d], d
    assert 5 + d not in in_d and 2 not in in_d  # the own history and the target
  assert 4 not in drawn[domains == 2]  # user 2 touched item 4 of domain C in training
  assert 4 in drawn[domains == 0]  # ... not item 4 of domain A


def test_a_two_domain_config_is_written_as_before_and_a_three_domain_one_round_trips():
  two = config_lib.ExperimentConfig()
  assert "num_items_more" not in two.to_json()
  assert two.model.num_domains == 2 and two.model.num_items == (0, 0)
  three = config_lib.ExperimentConfig(model=_config())
  assert config_lib.ExperimentConfig.from_json(three.to_json()) == three
  assert three.model.num_domains == 3 and three.model.num_items == SIZES


@pytest.mark.parametrize("variant", ["sasrec", "pinet", "minet", "conet", "ddtcdr", "item_knn",
                                     "pop_item_knn", "recent_popularity", "item_knn_cross"])
def test_two_domain_variants_refuse_three_domains(variant):
  message = (f"{variant} is a two-domain model and the data has 3 domains; use dasl, dasl_de, "
             "dasl_da, single_domain or popularity for K domains")
  with pytest.raises(config_lib.ConfigError, match=message):
    _config(variant)
  schema = F.DatasetSchema(feature_spec=F.FeatureSpec(num_domains=3), num_users=10,
                           num_items_a=5, num_items_b=5, num_items_more=(5,),
                           domain_names=("x", "y", "z"))
  with pytest.raises(config_lib.ConfigError, match=message):
    config_resolution.resolve_config(schema, model_overrides={"variant": variant})
  assert config_resolution.resolve_config(schema).model.num_items == (5, 5, 5)


# ----------------------------------------------------------------------------- planted signal


def _planted(n, seed, future=False):
  """Examples of 3 domains; domain A's label is 1 iff the target's parity is that of the last C item.

  With ``future`` the label reads the parity of a C item the user clicks *after* the
  target (so in no history): nothing in the features predicts it. B's and C's labels,
  and every other history item, are random.
  """
  rng = np.random.default_rng(seed)
  domain = rng.integers(0, K, n)
  features = {F.USER_ID: rng.integers(2, 40, n), F.DOMAIN: domain,
              F.ITEM_ID: np.array([rng.integers(2, SIZES[d]) for d in domain])}
  for d in range(K):
    features[F.history_key(d)] = rng.integers(2, SIZES[d], (n, T))
  category = (rng.integers(2, SIZES[2], n) if future else features[F.history_key(2)][:, -1]) % 2
  label = np.where(domain == 0, (features[F.ITEM_ID] % 2 == category).astype(np.float32),
                   rng.integers(0, 2, n).astype(np.float32))
  return ({name: tf.constant(value, tf.int64) for name, value in features.items()},
          tf.constant(label))


def _domain_a_test_auc(variant, future=False):
  """Domain-A test AUC after training on the planted examples."""
  tf_keras.utils.set_random_seed(7)
  model = build_model(_config(variant, ranking_loss="none", dropout=0.0,
                              other_domain_dropout=0.0, candidate_interactions=True))
  model.compile(tf_keras.optimizers.Adam(0.01))
  train = tf.data.Dataset.from_tensor_slices(_planted(2400, seed=1, future=future)).batch(64)
  model.fit(train, epochs=8, verbose=0)
  features, labels = _planted(900, seed=2, future=future)
  rows = features[F.DOMAIN].numpy() == 0
  return metrics_lib.roc_auc(labels.numpy()[rows], model(features)["logit_a"].numpy()[rows])


def test_domain_a_learns_from_the_last_domain_c_item_and_single_domain_cannot():
  dasl = _domain_a_test_auc("dasl")
  single = _domain_a_test_auc("single_domain")
  print(f"planted K=3 domain-A test AUC: dasl {dasl:.3f}, single_domain {single:.3f}")
  assert dasl >= 0.75 and single <= 0.6


def test_a_label_of_a_later_domain_c_item_stays_at_chance():
  auc = _domain_a_test_auc("dasl", future=True)
  print(f"future-leak probe domain-A test AUC: {auc:.3f}")
  assert abs(auc - 0.5) <= 0.1


# ----------------------------------------------------------------------------- dasl-train


def _write_logs(root):
  """Three domains' interaction logs of 24 users, with times, as CSV files."""
  rng = np.random.default_rng(3)
  times = iter(rng.permutation(100000)[:3000].tolist())
  paths = []
  for d in "abc":
    lines = ["user_id,item_id,rating,timestamp"]
    for u in range(24):
      for item in rng.choice(20, size=int(rng.integers(5, 10)), replace=False):
        lines.append(f"u{u},{d}{item},{int(rng.integers(1, 6))},{next(times)}")
    path = os.path.join(root, f"{d}.csv")
    with open(path, "w", encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")
    paths.append(path)
  return tuple(paths)


@pytest.fixture(scope="module")
def three_domain_data(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("k3"))
  out = os.path.join(root, "data")
  prepare(PrepareConfig(inputs=_write_logs(root), output_dir=out, history_length=T,
                        num_negatives=4, train_negatives=2, num_shards=1))
  return out


def _train(args):
  proc = support.run_cli("dasl_tf.pipelines.train", args, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
  output, _ = proc.communicate(timeout=600)
  return proc.returncode, output


def test_dasl_train_on_three_domains_writes_per_domain_metrics(three_domain_data, tmp_path):
  config = support.small_config_json(str(tmp_path / "run.json"), epochs=2,
                                     full_catalogue_positives=20)
  model_dir = str(tmp_path / "run")
  exports = str(tmp_path / "exports")
  code, output = _train([f"--data_dir={three_domain_data}", f"--config={config}",
                         "--variant=dasl", "--verbose=0", f"--model_dir={model_dir}",
                         f"--serving_model_dir={exports}"])
  assert code == 0, output[-4000:]
  with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
    metrics = json.load(f)
  for key in ("auc", "hr10", "hr10_full", "ndcg10_full", "examples", "loss", "val_auc"):
    for suffix in "abc":
      assert f"{key}_{suffix}" in metrics, f"{key}_{suffix}"
  assert "auc_d" not in metrics
  assert metrics["examples_a"] + metrics["examples_b"] + metrics["examples_c"] > 0
  with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
    assert len(json.load(f)["model"]["num_items_more"]) == 1
  with open(os.path.join(model_dir, "selection.json"), encoding="utf-8") as f:
    assert sorted(json.load(f)) == ["a", "b", "c"]  # the term weights chosen per head
  report = open(os.path.join(model_dir, "report", "report.md"), encoding="utf-8").read()
  assert "| C |" in report

  loaded = tf.saved_model.load(os.path.join(exports, "1"))
  with open(os.path.join(model_dir, "vocab", "items_c.txt"), encoding="utf-8") as f:
    item_c = f.readline().strip()
  outputs = loaded.signatures["predict"](
      user_id=tf.constant(["u1"]), item_id=tf.constant([item_c]), domain=tf.constant([2], tf.int64),
      hist_a=tf.constant([[""]]), hist_b=tf.constant([[""]]), hist_c=tf.constant([[item_c]]))
  assert sorted(outputs) == ["ctr", "ctr_a", "ctr_b", "ctr_c"]
  np.testing.assert_array_equal(outputs["ctr"].numpy(), outputs["ctr_c"].numpy())


def test_tfx_run_fn_on_three_domains_exports_into_serving_model_dir(three_domain_data, tmp_path):
  from dasl_tf.pipelines import tfx_trainer  # pylint: disable=g-import-not-at-top
  fn_args = tfx_trainer.FnArgs(
      train_files=[os.path.join(three_domain_data, "train", "*")],
      eval_files=[os.path.join(three_domain_data, "validation", "*")],
      model_run_dir=str(tmp_path / "run"), serving_model_dir=str(tmp_path / "serving"),
      train_steps=4, eval_steps=None,
      custom_config={"schema_dir": three_domain_data, "variant": "dasl",
                     "config": {"train": {"batch_size": 16}}})
  tfx_trainer.run_fn(fn_args)
  loaded = tf.saved_model.load(fn_args.serving_model_dir)  # TFX layout: no version directory
  shard = tf.io.gfile.glob(fn_args.eval_files[0])[0]
  records = [r.numpy() for r in tf.data.TFRecordDataset(shard).take(3)]
  scores = loaded.signatures["serving_indices"](examples=tf.constant(records))
  assert scores["ctr_c"].shape == (3,)


def test_dasl_train_refuses_a_two_domain_variant_on_three_domains(three_domain_data, tmp_path):
  model_dir = str(tmp_path / "run")
  code, output = _train([f"--data_dir={three_domain_data}", "--variant=sasrec",
                         f"--model_dir={model_dir}"])
  assert code != 0
  assert ("sasrec is a two-domain model and the data has 3 domains; use dasl, dasl_de, "
          "dasl_da, single_domain or popularity for K domains") in output
  assert not os.path.exists(model_dir)
