"""The co-occurrence and recency terms of DASL's top-n score, against NumPy references."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf import config as config_lib
from dasl_tf import cooccurrence
from dasl_tf import features as F
from dasl_tf.models import build_model

V_A, V_B, T = 9, 7, 3


def _examples(seed: int = 0, n: int = 60):
  """Examples whose histories hold distinct items, none equal to the target."""
  rng = np.random.default_rng(seed)
  domain = rng.integers(0, 2, n)
  item = np.where(domain == 0, rng.integers(2, V_A, n), rng.integers(2, V_B, n))
  hists = []
  for vocab, own in ((V_A, 0), (V_B, 1)):
    rows = []
    for i in range(n):
      pool = [x for x in range(2, vocab) if not (domain[i] == own and x == item[i])]
      length = rng.integers(0, T + 1)
      row = list(rng.choice(pool, size=length, replace=False))
      rows.append([0] * (T - length) + row)
    hists.append(np.array(rows, np.int64))
  return {F.ITEM_ID: item.astype(np.int64), F.DOMAIN: domain.astype(np.int64),
          F.HIST_A: hists[0], F.HIST_B: hists[1]}


@pytest.mark.parametrize("domain, source", [(0, 0), (1, 1), (0, 1), (1, 0)])
def test_leave_one_out_equals_the_tables_fitted_without_the_example(domain, source):
  examples = _examples()
  sizes = (V_A, V_B)
  full = cooccurrence.fit_table(examples, domain, source, sizes, num_neighbours=max(sizes))
  history = (F.HIST_A, F.HIST_B)[source]
  rows = np.flatnonzero(examples[F.DOMAIN] == domain)
  held_out = cooccurrence.leave_one_out_scores(
      examples[history][rows], examples[F.ITEM_ID][rows], *full,
      symmetric=domain == source).numpy()
  checked = 0
  for k, i in enumerate(rows):
    rest = {name: np.delete(values, i, axis=0) for name, values in examples.items()}
    table = cooccurrence.fit_table(rest, domain, source, sizes, num_neighbours=max(sizes))
    expected = cooccurrence.neighbour_scores(
        examples[history][i:i + 1], table.ids, table.sims,
        examples[F.ITEM_ID][i:i + 1, None], sizes[domain]).numpy()[0, 0]
    np.testing.assert_allclose(held_out[k], expected, rtol=1e-5, atol=1e-6)
    checked += expected > 0
  assert checked >= 5  # the held-out tables still rate many targets


def test_the_head_relevance_adds_the_weighted_term_and_training_leaves_the_target_out():
  config = config_lib.ModelConfig(num_users=20, num_items_a=V_A, num_items_b=V_B,
                                  history_length=T, knn_neighbors=4, dropout=0.0,
                                  other_domain_dropout=0.0)
  with_term = build_model(config.replace(recency_score=False))
  without = build_model(config.replace(cooccurrence_score=False, recency_score=False))
  examples = _examples(seed=1)
  features = {name: tf.constant(value) for name, value in examples.items()}
  features[F.USER_ID] = tf.constant(np.arange(len(examples[F.ITEM_ID])) % 18 + 2, tf.int64)
  labels = tf.ones_like(features[F.ITEM_ID], tf.float32)
  with_term.adapt(tf.data.Dataset.from_tensors((features, labels)))
  with_term.cooccurrence.weights_per_source.assign([[0.5, 2.0], [1.5, -1.0]])
  with_term(features)
  without(features)
  term_weights = {id(w) for w in with_term.cooccurrence.weights}
  without.set_weights([w.numpy() for w in with_term.weights if id(w) not in term_weights])
  candidates = tf.constant(np.random.default_rng(2).integers(2, V_B, (len(labels), 5)))
  for d in F.DOMAINS:
    outputs = with_term.domain_outputs(features, candidates, d).numpy()
    plain = without.domain_outputs(features, candidates, d).numpy()
    np.testing.assert_allclose(outputs[..., 0], plain[..., 0], rtol=1e-5, atol=1e-5)  # CTR
    tables = [cooccurrence.fit_table(examples, d, s, (V_A, V_B), 4) for s in (d, 1 - d)]
    term = sum(weight * cooccurrence.neighbour_scores(
        examples[(F.HIST_A, F.HIST_B)[s]], t.ids, t.sims, candidates, (V_A, V_B)[d]).numpy()
               for weight, s, t in zip(with_term.cooccurrence.weights_per_source.numpy()[d],
                                       (d, 1 - d), tables))
    np.testing.assert_allclose(outputs[..., 1], plain[..., 1] + term, rtol=1e-4, atol=1e-4)
  # Training scores each example's own target with its events left out, evaluation does not.
  target_train, _ = with_term.training_logits(features, training=True)
  target_eval, _ = with_term.training_logits(features, training=False)
  lowered = target_eval[:, 1].numpy() - target_train[:, 1].numpy()
  assert np.all(np.isfinite(lowered)) and (np.abs(lowered) > 1e-4).mean() > 0.3
  np.testing.assert_allclose(target_train[:, 0], target_eval[:, 0], rtol=1e-5, atol=1e-5)


def test_single_domain_reads_no_other_domain_through_the_term():
  config = config_lib.ModelConfig(variant="single_domain", num_users=20, num_items_a=V_A,
                                  num_items_b=V_B, history_length=T, knn_neighbors=4)
  model = build_model(config)
  assert model.cooccurrence.sources == {0: (0,), 1: (1,)}


def test_the_recency_term_counts_clicks_of_the_window_before_the_example():
  day = 86_400
  config = config_lib.ModelConfig(num_users=20, num_items_a=V_A, num_items_b=V_B,
                                  history_length=T, recent_window_days=10, dropout=0.0,
                                  other_domain_dropout=0.0, cooccurrence_score=False)
  model = build_model(config)
  plain = build_model(config.replace(recency_score=False))
  examples = _examples(seed=3)
  n = len(examples[F.ITEM_ID])
  rng = np.random.default_rng(4)
  examples[F.TIMESTAMP] = rng.integers(0, 40, n) * day
  labels = rng.integers(0, 2, n).astype(np.float32)
  features = {name: tf.constant(value) for name, value in examples.items()}
  features[F.USER_ID] = tf.constant(np.arange(n) % 18 + 2, tf.int64)
  model.adapt(tf.data.Dataset.from_tensors((features, tf.constant(labels))))
  model.recency_weights.assign([0.7, 1.3])
  model(features)
  plain(features)
  term_weights = {id(w) for w in model.recent_clicks.weights} | {id(model.recency_weights)}
  plain.set_weights([w.numpy() for w in model.weights if id(w) not in term_weights])
  candidates = rng.integers(2, V_B, (n, 4))
  for d in F.DOMAINS:
    got = model.domain_outputs(features, tf.constant(candidates), d).numpy()[..., 1]
    base = plain.domain_outputs(features, tf.constant(candidates), d).numpy()[..., 1]
    clicked = (labels > 0.5) & (examples[F.DOMAIN] == d)
    times, items = examples[F.TIMESTAMP][clicked], examples[F.ITEM_ID][clicked]
    t = examples[F.TIMESTAMP][:, None]
    recent = np.array([[np.sum((items == c) & (times >= t_i - 10 * day) & (times < t_i))
                        for c in row] for row, t_i in zip(candidates, t[:, 0])])
    weight = (0.7, 1.3)[d]
    np.testing.assert_allclose(got, base + weight * np.log1p(recent), rtol=1e-4, atol=1e-4)
    assert recent.max() > 0


def test_the_ctr_output_reads_none_of_the_top_n_terms():
  """``call`` (CTR) builds neither term: its graph reads none of their variables."""
  day = 86_400
  config = config_lib.ModelConfig(num_users=20, num_items_a=V_A, num_items_b=V_B,
                                  history_length=T, knn_neighbors=4, recent_window_days=10)
  model = build_model(config)
  examples = _examples(seed=5)
  n = len(examples[F.ITEM_ID])
  examples[F.TIMESTAMP] = np.random.default_rng(6).integers(0, 40, n) * day
  features = {name: tf.constant(value) for name, value in examples.items()}
  features[F.USER_ID] = tf.constant(np.arange(n) % 18 + 2, tf.int64)
  model.adapt(tf.data.Dataset.from_tensors((features, tf.ones([n]))))
  term_variables = {id(w) for w in model.cooccurrence.weights + model.recent_clicks.weights}
  term_variables.add(id(model.recency_weights))
  read = lambda fn, *args: {id(v) for v in tf.function(fn, autograph=False)
                            .get_concrete_function(*args).variables}
  assert not read(model.predict_ctr, features) & term_variables
  candidates = tf.constant(np.random.default_rng(7).integers(2, V_A, (n, 3)))
  term_weights = {id(model.cooccurrence.weights_per_source), id(model.recency_weights)}
  assert term_weights <= read(lambda f, c: model.head_outputs(f, c), features, candidates)
