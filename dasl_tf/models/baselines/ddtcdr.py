"""DDTCDR: Deep Dual Transfer Cross Domain Recommendation (Li and Tuzhilin, WSDM 2020).

Each domain has its own user embedding ``u_A``, ``u_B`` and its own prediction
network ``f_A``, ``f_B`` (an MLP over ``[user ; item]``). One latent orthogonal
mapping ``X`` (``X^T X = I``, so ``X^T`` is its inverse) carries a user between
the two user spaces, and each domain's prediction mixes its own network with the
other domain's network applied to the mapped user (the dual transfer)::

  logit_A = (1 - α) f_A([u_A ; e_i]) + α f_B([X u_A ; e_i])      (i an item of A)
  logit_B = (1 - α) f_B([u_B ; e_j]) + α f_A([X^T u_B ; e_j])    (j an item of B)
  loss   += orthogonality_weight · ||X^T X - I||_F^2

``X`` is DASL's :class:`~dasl_tf.layers.DualEmbedding` without the metric
losses of DASL's eq. (1)-(2) (``dual_weight=0``) and without retraction: only the
orthogonality penalty keeps it orthogonal, as in DDTCDR. DDTCDR is not
sequential: it does not read the histories.
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf
import tf_keras

from dasl_tf import config as config_lib
from dasl_tf import features as F
from dasl_tf.layers.dual_embedding import DualEmbedding
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.baselines import blocks
from dasl_tf.models.registry import register

# α: weight of the other domain's network in each domain's prediction.
DUAL_TRANSFER_WEIGHT = 0.5


@register("ddtcdr")
@tf_keras.utils.register_keras_serializable(package="dasl_tf")
class DDTCDR(CrossDomainRanker):
  """DDTCDR in the two-headed frame (see the module docstring)."""

  def __init__(self, config: config_lib.ModelConfig, name: str = None, **kwargs):
    super().__init__(config, name=name, **kwargs)
    l2 = config.l2
    self.users_a = blocks.user_embedding(config, "users_a")
    self.users_b = blocks.user_embedding(config, "users_b")
    self.items_a, self.items_b = blocks.item_embeddings(config)
    self.mapping = DualEmbedding(dual_weight=0.0,
                                 orthogonality_weight=config.orthogonality_weight,
                                 retraction_steps=0, name="orthogonal_mapping")
    self.network_a, self.network_b = (
        blocks.logit_mlp(config.hidden_units, config.dropout, l2, network_name)
        for network_name in ("network_a", "network_b"))

  def head_logits(self, features: Dict[str, tf.Tensor], candidates: tf.Tensor,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    user_ids = features[F.USER_ID]
    user_a, user_b = self.users_a(user_ids), self.users_b(user_ids)
    a_to_b, b_to_a = self.mapping((user_a, user_b, tf.zeros_like(user_ids, tf.bool)))

    def score(network, user, items):
      inputs = tf.concat([blocks.tile_to_candidates(user, candidates), items], axis=-1)
      return tf.squeeze(network(inputs, training=training), -1)

    items_a, items_b = self.items_a(candidates), self.items_b(candidates)
    alpha = DUAL_TRANSFER_WEIGHT
    logits_a = ((1.0 - alpha) * score(self.network_a, user_a, items_a)
                + alpha * score(self.network_b, a_to_b, items_a))
    logits_b = ((1.0 - alpha) * score(self.network_b, user_b, items_b)
                + alpha * score(self.network_a, b_to_a, items_b))
    return logits_a, logits_b
