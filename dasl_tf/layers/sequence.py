"""Sequential learning (paper section 3.3): a GRU over a user's recent items of one domain."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import tensorflow as tf

from dasl_tf.layers import shell

__getattr__ = shell.active_keras_classes("SequenceEncoder")


class SequenceEncoderBody(shell.LayerBody):
  """GRU over the embeddings of a user's last ``T`` items, padding masked (``SequenceEncoder``).

  Equations (3)-(5) of the paper, for t = 1..T over the unmasked steps:

    z_t = sigmoid(W_z x_t + U_z h_{t-1} + b_z)                 (3)
    r_t = sigmoid(W_r x_t + U_r h_{t-1} + b_r)                 (4)
    h_t = (1 - z_t) * h_{t-1} + z_t * tanh(W_h x_t + U_h (r_t * h_{t-1}) + b_h)   (5)

  The weights are laid out as in ``tf_keras.layers.GRU(reset_after=False)``
  (``kernel`` ``[d, 3 units]``, ``recurrent_kernel`` ``[units, 3 units]``,
  ``bias`` ``[3 units]``, gates in the order z, r, h; Keras names the gate
  ``1 - z_t``, which is the same function class), and the layer computes the
  same function. It is written out rather than wrapping the Keras layer
  because serving latency is dominated by the number of graph ops: the input
  projections ``W x_t + b`` of all T steps are one matrix product, and each
  step is then a dozen ops.

  Masked steps (padding) keep the previous state, so with left padding the
  state starts at the first real item; an all-padding history gives
  ``h_T = 0``. The output at a masked step repeats the previous output (0
  before the first real item).

  Example:
    >>> from dasl_tf.layers import SequenceEncoder
    >>> encoder = SequenceEncoder(units=8)
    >>> mask = tf.constant([[False, False, True, True, True]] * 2)
    >>> outputs, state = encoder(tf.ones([2, 5, 4]), mask=mask)
    >>> outputs.shape, state.shape
    (TensorShape([2, 5, 8]), TensorShape([2, 8]))

  Args:
    units: size of the hidden state h.
    return_sequences: also return the per-step outputs ``h_1..h_T``.
    unroll: unroll the T steps into the graph (faster for short fixed T);
      otherwise one ``tf.scan`` loop (for long or unknown T).

  Input shape: ``[batch, T, d]`` item embeddings; ``mask`` bool ``[batch, T]``
    (true = real item), or a Keras mask propagated from an upstream
    ``Embedding(mask_zero=True)``.
  Output shape: ``(outputs [batch, T, units], state [batch, units])`` with
    ``return_sequences``, else ``state [batch, units]``.

  Raises:
    ValueError: ``units`` is not positive.
  """

  def __init__(self, units: int, return_sequences: bool = True, unroll: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    if units <= 0:
      raise ValueError(f"SequenceEncoder units must be positive, got {units}")
    self.units = int(units)
    self.return_sequences = bool(return_sequences)
    self.unroll = bool(unroll)
    self.supports_masking = True

  def build(self, input_shape):
    input_dim = int(input_shape[-1])
    self.kernel = self.add_weight(
        name="kernel", shape=(input_dim, 3 * self.units), initializer="glorot_uniform")
    self.recurrent_kernel = self.add_weight(
        name="recurrent_kernel", shape=(self.units, 3 * self.units), initializer="orthogonal")
    self.bias = self.add_weight(name="bias", shape=(3 * self.units,), initializer="zeros")
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, mask: Optional[tf.Tensor] = None,
           training: Optional[bool] = None
           ) -> Union[tf.Tensor, Tuple[tf.Tensor, tf.Tensor]]:
    del training  # No dropout inside the GRU.
    inputs = tf.convert_to_tensor(inputs, self.compute_dtype)
    batch, steps = tf.shape(inputs)[0], tf.shape(inputs)[1]
    if mask is None:
      mask = tf.ones([batch, steps], tf.bool)
    # Time-major: [T, batch, ...]. W x_t + b of every step is one product.
    projected = tf.reshape(
        tf.matmul(tf.reshape(tf.transpose(inputs, [1, 0, 2]), [-1, inputs.shape[-1]]),
                  self.kernel) + self.bias,
        [steps, batch, 3 * self.units])
    projected_zr, projected_h = tf.split(projected, [2 * self.units, self.units], axis=-1)
    is_item = tf.transpose(tf.cast(mask, tf.bool))[:, :, None]
    recurrent_zr, recurrent_h = tf.split(self.recurrent_kernel, [2 * self.units, self.units],
                                         axis=1)

    def step(state, step_inputs):
      """Eq. (3)-(5) at one step; a padding step keeps the state."""
      x_zr, x_h, real = step_inputs
      z, r = tf.split(tf.sigmoid(x_zr + tf.matmul(state, recurrent_zr)), 2, axis=1)
      candidate = tf.tanh(x_h + tf.matmul(r * state, recurrent_h))
      return tf.where(real, candidate + z * (state - candidate), state)  # z h + (1-z) cand.

    initial = tf.zeros([batch, self.units], inputs.dtype)
    if self.unroll and inputs.shape[1] is not None:
      states = [initial]
      for step_inputs in zip(tf.unstack(projected_zr), tf.unstack(projected_h),
                             tf.unstack(is_item)):
        states.append(step(states[-1], step_inputs))
      outputs = tf.stack(states[1:], axis=1)
    else:
      outputs = tf.transpose(tf.scan(step, (projected_zr, projected_h, is_item), initial),
                             [1, 0, 2])
    if self.return_sequences:
      return outputs, outputs[:, -1]
    return outputs[:, -1]

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, return_sequences=self.return_sequences, unroll=self.unroll)
    return config


def encode_histories(histories: Sequence[tf.Tensor], embedders: Sequence, encoders: Sequence,
                     padding_id: int = 0, training: Optional[bool] = None
                     ) -> Tuple[List[tf.Tensor], List[tf.Tensor], List[tf.Tensor]]:
  """Each domain's history through its item embedding and its ``SequenceEncoder`` (3.3).

  Args:
    histories: per domain, int item ids ``[batch, T]`` (``padding_id`` pads).
    embedders: per domain, a layer mapping ids to ``[batch, T, d]`` embeddings.
    encoders: per domain, a ``SequenceEncoder``.
    padding_id: the id of padding steps, which the encoders mask.
    training: passed to the embedders and encoders.

  Returns:
    ``(masks, records, states)``: per domain the bool mask ``[batch, T]``, the
    per-step outputs ``R_D`` ``[batch, T, units]`` and the final state ``h_D``.
  """
  masks, records, states = [], [], []
  for history, embed, encode in zip(histories, embedders, encoders):
    mask = tf.not_equal(history, padding_id)
    outputs, state = encode(embed(history, training=training), mask=mask, training=training)
    masks.append(mask)
    records.append(outputs)
    states.append(state)
  return masks, records, states
