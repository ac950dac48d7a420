"""DualAttention: eq. (6)-(7) with one softmax over both domains, and the ablation modes."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf.layers import DualAttention

from tests import keras_testing


def _attention_numpy(query, keys, values, mask):
  scores = query @ np.swapaxes(keys, 1, 2) / np.sqrt(query.shape[-1])
  scores = np.where(mask[:, None, :], scores, -np.inf)
  with np.errstate(invalid="ignore"):
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights = weights / weights.sum(-1, keepdims=True)
  return np.nan_to_num(weights) @ values


def _inputs(rng):
  masks = {"mask_a": np.array([[0, 1, 1], [0, 0, 0], [1, 1, 1]], bool),
           "mask_b": np.array([[1, 1, 1], [0, 0, 0], [0, 0, 1]], bool)}
  return dict(query_a=rng.normal(size=(3, 2, 4)).astype(np.float32),
              query_b=rng.normal(size=(3, 2, 4)).astype(np.float32),
              records_a=rng.normal(size=(3, 3, 5)).astype(np.float32),
              records_b=rng.normal(size=(3, 3, 5)).astype(np.float32), **masks)


def _projections(layer, inputs):
  q = {d: inputs[f"query_{d}"] @ layer._query[d].get_weights()[0] for d in "ab"}
  k = {d: inputs[f"records_{d}"] @ layer._key[d].get_weights()[0] for d in "ab"}
  v = {d: inputs[f"records_{d}"] @ layer._value[d].get_weights()[0] for d in "ab"}
  return q, k, v


@pytest.mark.parametrize("mode", ["joint", "separate", "own"])
def test_matches_numpy_reference(mode):
  inputs = _inputs(np.random.default_rng(0))
  layer = DualAttention(key_dim=6, value_dim=3, mode=mode)
  outputs = layer(inputs)
  q, k, v = _projections(layer, inputs)
  m = {d: inputs[f"mask_{d}"] for d in "ab"}
  for head, (own, other) in enumerate((("a", "b"), ("b", "a"))):
    if mode == "joint":
      expected = _attention_numpy(q[own], np.concatenate([k[own], k[other]], 1),
                                  np.concatenate([v[own], v[other]], 1),
                                  np.concatenate([m[own], m[other]], 1))
    elif mode == "separate":
      expected = np.concatenate(
          [_attention_numpy(q[own], k[d], v[d], m[d]) for d in (own, other)], -1)
    else:
      expected = _attention_numpy(q[own], k[own], v[own], m[own])
    assert outputs[head].shape[-1] == layer.output_dim
    np.testing.assert_allclose(outputs[head].numpy(), expected, rtol=1e-5, atol=1e-6)
  # Example 1 has no record in either domain: zero output, no NaN.
  np.testing.assert_array_equal(outputs[0].numpy()[1], 0.0)


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


@pytest.mark.parametrize("mode", ["joint", "separate", "own"])
def test_one_head_alone_equals_that_head_of_both(mode):
  inputs = _inputs(np.random.default_rng(4))
  layer = DualAttention(key_dim=4, mode=mode)
  both = layer(inputs)
  for index, head in enumerate("ab"):
    other_query = "query_" + "ab"[1 - index]
    alone = layer({k: v for k, v in inputs.items() if k != other_query}, heads=(head,))
    assert len(alone) == 1
    np.testing.assert_allclose(alone[0].numpy(), both[index].numpy(), rtol=1e-6, atol=1e-7)


def test_rejects_a_missing_query_of_a_requested_head():
  inputs = _inputs(np.random.default_rng(5))
  layer = DualAttention(key_dim=4)
  layer(inputs)
  with pytest.raises(ValueError, match="query_b"):
    layer({k: v for k, v in inputs.items() if k != "query_b"}, heads=("a", "b"))


def test_keras_contract(tmp_path):
  inputs = {k: tf.constant(v) for k, v in _inputs(np.random.default_rng(3)).items()}
  keras_testing.check_keras_layer(lambda: DualAttention(key_dim=4), inputs, str(tmp_path))
