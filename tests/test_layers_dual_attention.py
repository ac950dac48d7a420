"""DualAttention: eq. (6)-(7) with one softmax over both domains, and the ablation modes."""
import ast
import os

import numpy as np
import pytest
import tensorflow as tf

from dasl_tf.layers import DualAttention
from dasl_tf.layers import dual_attention
from tests import layer_testing

A, B = 0, 1  # the heads, in the order of the layer's domain_names
DOMAINS = (A, B)
OTHER = {A: B, B: A}
# Domain B's histories are longer than domain A's, so that a split of the joint
# weights at the wrong place shows.
T_A, T_B = 3, 4


def _weights_numpy(query, keys, mask):
  """softmax(q K^T / sqrt(d_k)) with masked records at 0 (all-masked rows all 0)."""
  scores = query @ np.swapaxes(keys, 1, 2) / np.sqrt(query.shape[-1])
  scores = np.where(mask[:, None, :], scores, -np.inf)
  with np.errstate(invalid="ignore"):
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights = weights / weights.sum(-1, keepdims=True)
  return np.nan_to_num(weights)


def _inputs(rng):
  masks = {"mask_a": np.array([[0, 1, 1], [0, 0, 0], [1, 1, 1]], bool),
           "mask_b": np.array([[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 1]], bool)}
  return dict(query_a=rng.normal(size=(3, 2, 4)).astype(np.float32),
              query_b=rng.normal(size=(3, 2, 4)).astype(np.float32),
              records_a=rng.normal(size=(3, T_A, 5)).astype(np.float32),
              records_b=rng.normal(size=(3, T_B, 5)).astype(np.float32), **masks)


def _projections(layer, inputs):
  """Per domain: the projected queries, keys and values, and the masks (NumPy)."""
  def project(sublayers, name):
    return {d: inputs[name[d]] @ sublayers[d].get_weights()[0] for d in DOMAINS}

  return (project(layer._query, dual_attention.QUERY),
          project(layer._key, dual_attention.RECORDS),
          project(layer._value, dual_attention.RECORDS),
          {d: inputs[dual_attention.MASK[d]] for d in DOMAINS})


def _reference_weights(layer, inputs, mode):
  """Each head's weights over (A's records ; B's records), [batch, C, T_A + T_B] (NumPy)."""
  q, k, _, m = _projections(layer, inputs)
  weights = []
  for own in DOMAINS:
    other = OTHER[own]
    if mode == "joint":  # eq. (6)-(7): one softmax over (own ; other), split back.
      joint = _weights_numpy(q[own], np.concatenate([k[own], k[other]], 1),
                             np.concatenate([m[own], m[other]], 1))
      per_domain = {own: joint[..., :k[own].shape[1]], other: joint[..., k[own].shape[1]:]}
    else:
      per_domain = {d: _weights_numpy(q[own], k[d], m[d]) for d in DOMAINS}
      if mode == "own":
        per_domain[other] = np.zeros_like(per_domain[other])
    weights.append(np.concatenate([per_domain[d] for d in DOMAINS], -1))
  return weights


def _weighted_values(layer, inputs, mode, weights):
  """Each head's output from its weights over (A ; B) and the values (NumPy)."""
  _, _, v, _ = _projections(layer, inputs)
  outputs = []
  for own, head_weights in zip(DOMAINS, weights):
    parts = {A: head_weights[..., :T_A] @ v[A],
             B: head_weights[..., T_A:] @ v[B]}
    if mode == "separate":
      outputs.append(np.concatenate([parts[own], parts[OTHER[own]]], -1))
    else:
      outputs.append(parts[A] + parts[B])
  return outputs


@pytest.mark.parametrize("mode", dual_attention.MODES)
def test_matches_numpy_reference(mode):
  inputs = _inputs(np.random.default_rng(0))
  layer = DualAttention(key_dim=6, value_dim=3, mode=mode)
  outputs = layer(inputs)
  reference = _reference_weights(layer, inputs, mode)
  expected = _weighted_values(layer, inputs, mode, reference)
  for head in range(2):
    assert outputs[head].shape[-1] == layer.output_dim
    np.testing.assert_allclose(outputs[head].numpy(), expected[head], rtol=1e-5, atol=1e-6)
  for actual, weights in zip(layer.record_weights(inputs), reference):
    np.testing.assert_allclose(actual.numpy(), weights, rtol=1e-5, atol=1e-6)
  # Example 1 has no record in either domain: zero output, no NaN.
  np.testing.assert_array_equal(outputs[0].numpy()[1], 0.0)


@pytest.mark.parametrize("mode", dual_attention.MODES)
def test_call_is_the_weighted_sum_of_the_values_under_record_weights(mode):
  """``call`` multiplies the values by exactly the weights ``record_weights`` reports."""
  inputs = _inputs(np.random.default_rng(6))
  layer = DualAttention(key_dim=6, value_dim=3, mode=mode)
  outputs = layer(inputs)
  weights = [w.numpy() for w in layer.record_weights(inputs)]
  expected = _weighted_values(layer, inputs, mode, weights)
  for head in range(2):
    np.testing.assert_allclose(outputs[head].numpy(), expected[head], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", dual_attention.MODES)
def test_record_weights_normalisation(mode):
  """joint: one softmax over both halves; separate: one per half; own: the other half is 0."""
  inputs = _inputs(np.random.default_rng(7))
  layer = DualAttention(key_dim=4, mode=mode)
  layer(inputs)
  has_records = {d: inputs[dual_attention.MASK[d]].any(1)[:, None] * np.ones((1, 2))
                 for d in DOMAINS}
  mask = np.concatenate([inputs["mask_a"], inputs["mask_b"]], 1)[:, None, :]
  for head, weights in zip(DOMAINS, layer.record_weights(inputs)):
    weights = weights.numpy()
    assert weights.shape == (3, 2, T_A + T_B)
    np.testing.assert_array_equal(np.where(mask, 0.0, weights), 0.0)
    sums = {A: weights[..., :T_A].sum(-1), B: weights[..., T_A:].sum(-1)}
    if mode == "joint":
      np.testing.assert_allclose(sums[A] + sums[B],
                                 np.maximum(has_records[A], has_records[B]),
                                 atol=1e-6)
    else:
      attended = DOMAINS if mode == "separate" else (head,)
      for d in DOMAINS:
        np.testing.assert_allclose(sums[d], has_records[d] * (d in attended), atol=1e-6)


def test_joint_softmax_couples_the_domains():
  """In joint mode adding a domain-B record changes the weights of domain A's records."""
  inputs = _inputs(np.random.default_rng(1))
  inputs["records_b"] = np.zeros_like(inputs["records_b"])  # values 0: only the weights move.
  for mode, coupled in (("joint", True), ("separate", False)):
    layer = DualAttention(key_dim=4, mode=mode)
    with_b = layer(inputs)[0].numpy()
    without_b = layer(dict(inputs, mask_b=np.zeros_like(inputs["mask_b"])))[0].numpy()
    assert (not np.allclose(with_b[0], without_b[0])) == coupled


@pytest.mark.parametrize("kwargs", [dict(key_dim=0), dict(key_dim=4, mode="both")])
def test_rejects_bad_arguments(kwargs):
  with pytest.raises(ValueError):
    DualAttention(**kwargs)


def test_rejects_missing_inputs():
  inputs = _inputs(np.random.default_rng(2))
  del inputs["mask_b"]
  with pytest.raises(ValueError, match="mask_b"):
    DualAttention(key_dim=4)(inputs)


@pytest.mark.parametrize("mode", dual_attention.MODES)
def test_one_head_alone_equals_that_head_of_both(mode):
  inputs = _inputs(np.random.default_rng(4))
  layer = DualAttention(key_dim=4, mode=mode)
  both = layer(inputs)
  for index, head in enumerate(DOMAINS):
    other_query = dual_attention.QUERY[OTHER[head]]
    alone = layer({k: v for k, v in inputs.items() if k != other_query}, heads=(head,))
    assert len(alone) == 1
    np.testing.assert_allclose(alone[0].numpy(), both[index].numpy(), rtol=1e-6, atol=1e-7)


def test_rejects_a_missing_query_of_a_requested_head():
  inputs = _inputs(np.random.default_rng(5))
  layer = DualAttention(key_dim=4)
  layer(inputs)
  with pytest.raises(ValueError, match="query_b"):
    layer({k: v for k, v in inputs.items() if k != "query_b"}, heads=DOMAINS)


def test_rejects_a_head_that_is_not_a_domain():
  with pytest.raises(ValueError, match="heads must be domains"):
    DualAttention(key_dim=4)(_inputs(np.random.default_rng(5)), heads=("a",))


@pytest.mark.parametrize("mode, output_dim", [("joint", 4), ("separate", 8), ("own", 4)])
def test_layer_contract(mode, output_dim, tmp_path):
  inputs = {k: tf.constant(v) for k, v in _inputs(np.random.default_rng(3)).items()}
  layer_testing.run_layer_test(
      DualAttention, dict(key_dim=4, mode=mode), str(tmp_path), input_data=inputs,
      expected_output_shape=[(3, 2, output_dim)] * 2, expected_num_trainable_weights=6)


def test_domain_names_name_the_inputs_and_change_nothing_else():
  inputs = _inputs(np.random.default_rng(6))
  default = DualAttention(key_dim=4)
  expected = default(inputs)
  named = DualAttention(key_dim=4, domain_names=("books", "movies"))
  suffix = {"a": "books", "b": "movies"}
  renamed = {f"{k[:-2]}_{suffix[k[-1]]}": v for k, v in inputs.items()}
  named(renamed)
  named.set_weights(default.get_weights())
  assert sorted(v.name.split("/")[-2] for v in named.weights) == [
      "key_books", "key_movies", "query_books", "query_movies", "value_books", "value_movies"]
  for got, want in zip(named(renamed), expected):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)
  with pytest.raises(ValueError, match="query_movies"):
    named({k: v for k, v in renamed.items() if k != "query_movies"})
  assert DualAttention.from_config(named.get_config()).domain_names == ("books", "movies")


@pytest.mark.parametrize("names", [("a", "a"), ("a",), ("a", "b", "a")])
def test_rejects_domain_names_that_are_not_two_or_more_distinct_names(names):
  with pytest.raises(ValueError, match="domain_names"):
    DualAttention(key_dim=4, domain_names=names)


# K = 3 domains: each with its own history length, so that a split of the joint
# weights at the wrong place, or records taken in the wrong order, shows.
NAMES_3 = ("x", "y", "z")
LENGTHS_3 = (2, 3, 4)


def _inputs_k(rng, names=NAMES_3, lengths=LENGTHS_3, batch=4, candidates=2):
  inputs = {}
  for name, length in zip(names, lengths):
    inputs[f"query_{name}"] = rng.normal(size=(batch, candidates, 4)).astype(np.float32)
    inputs[f"records_{name}"] = rng.normal(size=(batch, length, 5)).astype(np.float32)
    mask = rng.random((batch, length)) < 0.6
    mask[1] = False  # example 1 has no record in any domain
    inputs[f"mask_{name}"] = mask
  return inputs


def _reference_k(layer, inputs, mode, names=NAMES_3):
  """Per head: (output, weights over all records in domain order), in NumPy.

  Written from the K-domain form of eq. (6)-(7): head d's softmax runs over
  (own records ; the others' in domain order); "separate" concatenates one
  softmax-weighted sum per domain, own first; "own" keeps its own domain.
  """
  def weight(sublayers, d):
    return sublayers[d].get_weights()[0]

  k = len(names)
  q = [inputs[f"query_{n}"] @ weight(layer._query, d) for d, n in enumerate(names)]
  keys = [inputs[f"records_{n}"] @ weight(layer._key, d) for d, n in enumerate(names)]
  values = [inputs[f"records_{n}"] @ weight(layer._value, d) for d, n in enumerate(names)]
  masks = [inputs[f"mask_{n}"] for n in names]
  results = []
  for own in range(k):
    order = [own] + [d for d in range(k) if d != own]
    per_domain = {}
    if mode == "joint":
      joint = _weights_numpy(q[own], np.concatenate([keys[d] for d in order], 1),
                             np.concatenate([masks[d] for d in order], 1))
      bounds = np.cumsum([0] + [keys[d].shape[1] for d in order])
      for index, d in enumerate(order):
        per_domain[d] = joint[..., bounds[index]:bounds[index + 1]]
    else:
      attended = order if mode == "separate" else [own]
      for d in range(k):
        per_domain[d] = (_weights_numpy(q[own], keys[d], masks[d]) if d in attended
                         else np.zeros(q[own].shape[:2] + (keys[d].shape[1],), np.float32))
    parts = [per_domain[d] @ values[d] for d in order]
    output = np.concatenate(parts, -1) if mode == "separate" else sum(parts)
    results.append((output, np.concatenate([per_domain[d] for d in range(k)], -1)))
  return results


@pytest.mark.parametrize("mode", dual_attention.MODES)
def test_three_domains_match_numpy_reference(mode):
  inputs = _inputs_k(np.random.default_rng(11))
  layer = DualAttention(key_dim=6, value_dim=3, mode=mode, domain_names=NAMES_3)
  outputs = layer(inputs)
  assert len(outputs) == 3
  expected = _reference_k(layer, inputs, mode)
  for head, (output, weights) in enumerate(expected):
    assert outputs[head].shape == (4, 2, layer.output_dim) == output.shape
    np.testing.assert_allclose(outputs[head].numpy(), output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.record_weights(inputs)[head].numpy(), weights,
                               rtol=1e-5, atol=1e-6)
  assert layer.output_dim == (9 if mode == "separate" else 3)
  np.testing.assert_array_equal(outputs[0].numpy()[1], 0.0)  # no record anywhere: 0, no NaN


def test_three_domains_joint_softmax_sums_to_one_over_all_records():
  inputs = _inputs_k(np.random.default_rng(12))
  layer = DualAttention(key_dim=4, domain_names=NAMES_3)
  layer(inputs)
  has_any = np.any([inputs[f"mask_{n}"].any(1) for n in NAMES_3], 0)
  for weights in layer.record_weights(inputs):
    assert weights.shape == (4, 2, sum(LENGTHS_3))
    np.testing.assert_allclose(weights.numpy().sum(-1), has_any[:, None] * np.ones((1, 2)),
                               atol=1e-6)


def test_third_domain_records_reach_the_first_head_only_when_joint_or_separate():
  """Domain z's records change head x's output in joint and separate mode, not in own."""
  inputs = _inputs_k(np.random.default_rng(13))
  moved = dict(inputs, records_z=inputs["records_z"] + 1.0)
  for mode, reaches in (("joint", True), ("separate", True), ("own", False)):
    layer = DualAttention(key_dim=4, mode=mode, domain_names=NAMES_3)
    before = layer(inputs, heads=(0,))[0].numpy()
    after = layer(moved, heads=(0,))[0].numpy()
    assert (not np.allclose(before, after)) == reaches, mode


def test_three_domains_one_head_alone_and_serialization():
  inputs = _inputs_k(np.random.default_rng(14))
  layer = DualAttention(key_dim=4, domain_names=NAMES_3)
  both = layer(inputs)
  (alone,) = layer({k: v for k, v in inputs.items() if k not in ("query_x", "query_y")},
                   heads=(2,))
  np.testing.assert_allclose(alone.numpy(), both[2].numpy(), rtol=1e-6, atol=1e-7)
  restored = DualAttention.from_config(layer.get_config())
  restored(inputs)
  restored.set_weights(layer.get_weights())
  assert restored.domain_names == NAMES_3
  for got, want in zip(restored(inputs), both):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)
  with pytest.raises(ValueError, match="heads must be domains"):
    layer(inputs, heads=(3,))


def test_three_domain_layer_contract(tmp_path):
  inputs = {k: tf.constant(v) for k, v in _inputs_k(np.random.default_rng(15)).items()}
  layer_testing.run_layer_test(
      DualAttention, dict(key_dim=4, domain_names=NAMES_3), str(tmp_path), input_data=inputs,
      expected_output_shape=[(4, 2, 4)] * 3, expected_num_trainable_weights=9)


def test_layers_import_no_dataset_spec():
  """A layer takes its names as arguments: no layer module reads dasl_tf.features."""
  directory = os.path.dirname(dual_attention.__file__)
  for name in sorted(os.listdir(directory)):
    if not name.endswith(".py"):
      continue
    with open(os.path.join(directory, name), encoding="utf-8") as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module:
        imported = [f"{node.module}.{alias.name}" for alias in node.names]
      elif isinstance(node, ast.Import):
        imported = [alias.name for alias in node.names]
      else:
        continue
      assert not any(m.startswith("dasl_tf.features") for m in imported), (name, imported)
