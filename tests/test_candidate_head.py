"""The prediction head computed per example where it does not depend on the candidate."""
import numpy as np
import pytest
import tensorflow as tf

from dasl_tf.layers import MLP, CandidateInteraction
from dasl_tf.models import candidate_head


def _inputs(rng, batch=3, candidates=5, context_sizes=(4, 6, 3), attended=5, dim=4):
  context = [tf.constant(rng.normal(size=(batch, k)), tf.float32) for k in context_sizes]
  return (context, tf.constant(rng.normal(size=(batch, candidates, attended)), tf.float32),
          tf.constant(rng.normal(size=(batch, candidates, dim)), tf.float32))


def _numpy_head(mlp, interaction, context, attended, candidates):
  """The head on the concatenation [u ; a_c ; c ; c ⊙ (a_c P_0) ; c ⊙ (u_i P_i) ...], in NumPy."""
  context = [u.numpy() for u in context]
  attended, candidates = attended.numpy(), candidates.numpy()
  num_candidates = candidates.shape[1]
  parts = [np.repeat(np.concatenate(context, -1)[:, None], num_candidates, 1), attended,
           candidates]
  if interaction is not None:
    projections = interaction.get_weights()
    parts.append(candidates * (attended @ projections[0]))
    parts += [candidates * (u @ p)[:, None] for u, p in zip(context, projections[1:])]
  x = np.concatenate(parts, -1)
  weights = mlp.get_weights()
  for kernel, bias in zip(weights[:-2:2], weights[1:-2:2]):
    x = np.maximum(x @ kernel + bias, 0.0)
  return x @ weights[-2] + weights[-1]


@pytest.mark.parametrize("interactions", [True, False])
def test_head_outputs_match_the_mlp_over_the_concatenated_input(interactions):
  rng = np.random.default_rng(0)
  context, attended, candidates = _inputs(rng)
  mlp = MLP((8, 6), 2, dropout=0.3)
  interaction = CandidateInteraction() if interactions else None
  outputs = candidate_head.head_outputs(mlp, interaction, context, attended, candidates)
  np.testing.assert_allclose(outputs.numpy(),
                             _numpy_head(mlp, interaction, context, attended, candidates),
                             rtol=1e-5, atol=1e-5)


def test_layers_built_by_the_head_have_the_weights_of_a_call_on_the_concatenation():
  """The same variables (names and shapes) as before: checkpoints restore either way."""
  rng = np.random.default_rng(1)
  context, attended, candidates = _inputs(rng)
  built = MLP((8,), 2, name="head"), CandidateInteraction(name="interaction")
  candidate_head.head_outputs(*built, context, attended, candidates)
  called = MLP((8,), 2, name="head"), CandidateInteraction(name="interaction")
  called[0](tf.concat([tf.repeat(tf.concat(context, -1)[:, None], 5, 1), attended, candidates,
                       called[1]([candidates, attended, *context])], -1))
  for mine, theirs in zip(built, called):
    assert [(w.name, w.shape) for w in mine.weights] == [(w.name, w.shape) for w in theirs.weights]


def test_gradients_equal_those_of_the_concatenated_head():
  rng = np.random.default_rng(2)
  context, attended, candidates = _inputs(rng)
  mlp, interaction = MLP((8,), 2), CandidateInteraction()
  candidate_head.head_outputs(mlp, interaction, context, attended, candidates)
  variables = mlp.trainable_weights + interaction.trainable_weights
  inputs = [*context, attended, candidates]

  def concatenated(*xs):
    *us, a, c = xs
    return mlp(tf.concat([tf.repeat(tf.concat(us, -1)[:, None], 5, 1), a, c,
                          interaction([c, a, *us])], -1))

  grads = []
  for head in (lambda *xs: candidate_head.head_outputs(mlp, interaction, xs[:-2], *xs[-2:]),
               concatenated):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      loss = tf.reduce_sum(tf.square(head(*inputs)))
    grads.append(tape.gradient(loss, variables + inputs))
  for factored, reference in zip(*grads):
    np.testing.assert_allclose(factored.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5)


def test_dropout_runs_after_the_first_layer_only_when_training():
  rng = np.random.default_rng(3)
  context, attended, candidates = _inputs(rng)
  mlp = MLP((16,), 1, dropout=0.5)
  inference = candidate_head.head_outputs(mlp, None, context, attended, candidates)
  np.testing.assert_allclose(
      inference.numpy(), _numpy_head(mlp, None, context, attended, candidates), rtol=1e-5,
      atol=1e-5)
  trained = candidate_head.head_outputs(mlp, None, context, attended, candidates, training=True)
  assert not np.allclose(trained.numpy(), inference.numpy())
