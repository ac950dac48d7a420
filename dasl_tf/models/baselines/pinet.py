"""π-Net: Parallel Information-sharing Network (Ma et al., SIGIR 2019).

For target domain ``t`` and source domain ``s`` (each domain is the target of
one head):

* Sequence encoders: one GRU per domain over its item history (the
  :class:`~dasl_tf.layers.SequenceEncoder` DASL uses); ``h_t`` is the
  target encoder's final state, ``h^s_j`` the source encoder's state at step j.
* Shared account filter unit (SFU), a recurrent cell over the source steps with
  ``K`` latent account members ``r_k``::

    f_k = σ(W_f [h^s_j ; h_t ; s_{j-1}] + V_f r_k + b_f)
    ŝ_k = tanh(W_s [h^s_j ; s_{j-1}] + V_s r_k + b_s)
    s_j = 1/K Σ_k (f_k ⊙ s_{j-1} + (1 - f_k) ⊙ ŝ_k)

* Cross-domain transfer unit (CTU): a GRU over ``s_1..s_T``; its final state
  ``g_{s→t}`` carries the filtered source information.
* Prediction: ``logit = MLP([h_t ; g_{s→t} ; e_q])`` for candidate ``q`` (π-Net
  scores every item with a softmax layer over ``[h_t ; g_{s→t}]``; a CTR head
  scores a given candidate instead).

π-Net is built for shared accounts identified by their sequences only, so it has
no user-id embedding. The paper feeds the SFU the target state *at the time of*
each source step (a mixed sequence); our histories are per domain, so it sees the
target encoder's final state (the latest one before the example's time).
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.layers.sequence import SequenceEncoder
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.baselines import blocks
from dasl_tf.models.registry import register

DEFAULT_NUM_MEMBERS = 4


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class SharedAccountFilterCell(tf_keras.layers.Layer):
  """π-Net's shared account filter unit as a Keras RNN cell.

  Each step's input is ``[h^s_j ; h_t]`` (source state, then target state, of
  equal size); the state ``s_j`` is the mean over ``num_members`` latent members
  of a gated update (see the module docstring).

  Example:
    >>> rnn = tf_keras.layers.RNN(SharedAccountFilterCell(units=4, num_members=2),
    ...                           return_sequences=True)
    >>> rnn(tf.ones([2, 5, 6])).shape
    TensorShape([2, 5, 4])

  Args:
    units: size of the filtered state ``s_j`` and of the member embeddings.
    num_members: K, latent members sharing an account.
  """

  def __init__(self, units: int, num_members: int = DEFAULT_NUM_MEMBERS, **kwargs):
    super().__init__(**kwargs)
    if units < 1:
      raise ValueError(f"units must be >= 1, got {units}")
    if num_members < 1:
      raise ValueError(f"num_members must be >= 1, got {num_members}")
    self.units = units
    self.num_members = num_members

  @property
  def state_size(self) -> int:
    return self.units

  @property
  def output_size(self) -> int:
    return self.units

  def build(self, input_shape):
    input_dim = int(input_shape[-1])
    if input_dim % 2:
      raise ValueError(f"{self.name}: the input [source state ; target state] must have an "
                       f"even size, got {input_dim}")
    self._source_dim = input_dim // 2
    units = self.units

    def weight(name, shape, initializer="glorot_normal"):
      return self.add_weight(name=name, shape=shape, initializer=initializer)

    self.members = weight("members", (self.num_members, units))
    self.gate_kernel = weight("gate_kernel", (input_dim + units, units))
    self.gate_member_kernel = weight("gate_member_kernel", (units, units))
    self.gate_bias = weight("gate_bias", (units,), "ones")
    self.candidate_kernel = weight("candidate_kernel", (self._source_dim + units, units))
    self.candidate_member_kernel = weight("candidate_member_kernel", (units, units))
    self.candidate_bias = weight("candidate_bias", (units,), "zeros")
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, states):
    state = states[0]                                                   # [B, u]
    source = inputs[:, :self._source_dim]
    gate = tf.sigmoid(
        (tf.concat([inputs, state], -1) @ self.gate_kernel + self.gate_bias)[:, None, :]
        + (self.members @ self.gate_member_kernel)[None])               # [B, K, u]
    candidate = tf.tanh(
        (tf.concat([source, state], -1) @ self.candidate_kernel + self.candidate_bias)[:, None]
        + (self.members @ self.candidate_member_kernel)[None])          # [B, K, u]
    new_state = tf.reduce_mean(gate * state[:, None, :] + (1.0 - gate) * candidate, axis=1)
    return new_state, [new_state]

  def get_config(self):
    return {**super().get_config(), "units": self.units, "num_members": self.num_members}


@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class ParallelTransferHead(tf_keras.layers.Layer):
  """One π-Net head: SFU and CTU over the source states, then the prediction MLP.

  Args:
    units: size of the SFU and CTU states.
    hidden_units: hidden layer sizes of the prediction MLP.
    num_members: K, latent members of the SFU.
    dropout: dropout rate in the prediction MLP.
    l2: L2 penalty on the MLP kernels.

  Call args:
    candidates: candidate item embeddings ``[B, C, d]`` (target domain).
    target_state: ``[B, h]`` final state of the target-domain encoder.
    source_states: ``[B, T, h]`` per-step states of the source-domain encoder.
    source_mask: bool ``[B, T]``, True on real source items.

  Output shape: ``[B, C]`` logits.
  """

  def __init__(self, units: int, hidden_units: Sequence[int] = (64, 32),
               num_members: int = DEFAULT_NUM_MEMBERS, dropout: float = 0.0, l2: float = 0.0,
               **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.hidden_units = tuple(hidden_units)
    self.num_members = num_members
    self.dropout = dropout
    self.l2 = l2

  def build(self, candidates_shape):
    self._filter = tf_keras.layers.RNN(
        SharedAccountFilterCell(self.units, self.num_members, name="filter_cell"),
        return_sequences=True, unroll=True, name="shared_account_filter")
    self._transfer = SequenceEncoder(self.units, return_sequences=False,
                                     name="cross_domain_transfer")
    self._mlp = blocks.logit_mlp(self.hidden_units, self.dropout, self.l2, "mlp")
    super().build(candidates_shape)

  def call(self, candidates: tf.Tensor, target_state: tf.Tensor, source_states: tf.Tensor,
           source_mask: tf.Tensor, training: bool = False) -> tf.Tensor:
    tiled_target = tf.repeat(target_state[:, None, :], tf.shape(source_states)[1], axis=1)
    filtered = self._filter(tf.concat([source_states, tiled_target], -1), mask=source_mask)
    transferred = self._transfer(filtered, mask=source_mask, training=training)
    context = tf.concat([target_state, transferred], -1)
    logits = self._mlp(
        tf.concat([blocks.tile_to_candidates(context, candidates), candidates], -1),
        training=training)
    return tf.squeeze(logits, -1)

  def get_config(self):
    return {**super().get_config(), "units": self.units, "hidden_units": self.hidden_units,
            "num_members": self.num_members, "dropout": self.dropout, "l2": self.l2}


@register("pinet")
@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class PiNet(CrossDomainRanker):
  """π-Net with both domains as targets: encoders per domain, one SFU + CTU per head."""

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    l2 = config.l2
    self.items_a, self.items_b = blocks.item_embeddings(config)
    self.encoder_a, self.encoder_b = (
        SequenceEncoder(config.gru_units, name=encoder_name)
        for encoder_name in ("encoder_a", "encoder_b"))
    self.head_a, self.head_b = (
        ParallelTransferHead(config.gru_units, config.hidden_units, dropout=config.dropout,
                             l2=l2, name=head_name)
        for head_name in ("head_a", "head_b"))

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    hist_a, hist_b = features[F.HIST_A], features[F.HIST_B]
    mask_a, mask_b = blocks.history_mask(hist_a), blocks.history_mask(hist_b)
    states_a, final_a = self.encoder_a(self.items_a(hist_a), mask=mask_a, training=training)
    states_b, final_b = self.encoder_b(self.items_b(hist_b), mask=mask_b, training=training)
    logits_a = self.head_a(self.items_a(candidates), final_a, states_b, mask_b,
                           training=training)
    logits_b = self.head_b(self.items_b(candidates), final_b, states_a, mask_a,
                           training=training)
    return logits_a, logits_b
