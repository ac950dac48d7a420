"""Sequential learning (paper section 3.3): a GRU over a user's recent items of one domain."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class SequenceEncoder(tf_keras.layers.Layer):
  """GRU over the embeddings of a user's last ``T`` items, padding masked.

  Equations (3)-(5) of the paper, for t = 1..T over the unmasked steps:

    z_t = sigmoid(W_z x_t + U_z h_{t-1} + b_z)                 (3)
    r_t = sigmoid(W_r x_t + U_r h_{t-1} + b_r)                 (4)
    h_t = (1 - z_t) * h_{t-1} + z_t * tanh(W_h x_t + U_h (r_t * h_{t-1}) + b_h)   (5)

  implemented by ``tf_keras.layers.GRU(reset_after=False)`` (Keras names the
  gate ``1 - z_t``, which is the same function class). Masked steps (padding)
  keep the previous state, so with left padding the state starts at the first
  real item; an all-padding history gives ``h_T = 0``. The output at a masked
  step repeats the previous output (0 before the first real item).

  Example:
    >>> encoder = SequenceEncoder(units=8)
    >>> mask = tf.constant([[False, False, True, True, True]] * 2)
    >>> outputs, state = encoder(tf.ones([2, 5, 4]), mask=mask)
    >>> outputs.shape, state.shape
    (TensorShape([2, 5, 8]), TensorShape([2, 8]))

  Args:
    units: size of the hidden state h.
    return_sequences: also return the per-step outputs ``h_1..h_T``.
    unroll: unroll the T steps into the graph (faster for short fixed T on CPU).

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
    self._gru = tf_keras.layers.GRU(self.units, return_sequences=self.return_sequences,
                                    return_state=self.return_sequences, reset_after=False,
                                    unroll=self.unroll, name="gru")
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, mask: Optional[tf.Tensor] = None,
           training: Optional[bool] = None
           ) -> Union[tf.Tensor, Tuple[tf.Tensor, tf.Tensor]]:
    if mask is not None:
      mask = tf.cast(mask, tf.bool)
    result = self._gru(inputs, mask=mask, training=training)
    if self.return_sequences:
      outputs, state = result
      return outputs, state
    return result

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, return_sequences=self.return_sequences, unroll=self.unroll)
    return config
