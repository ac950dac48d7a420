"""dasl_tf models: DASL with its ablations, and the paper's baselines.

:func:`build_model` makes the model a :class:`~dasl_tf.config.ModelConfig`
names in its ``variant``.
"""
from dasl_tf import use_keras2  # noqa: F401  pylint: disable=unused-import  (first: TFRS needs Keras 2)
from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf.models.base import CrossDomainRanker
from dasl_tf.models.task import CrossDomainTask
from dasl_tf.models.registry import build_model, register, variants
from dasl_tf.models.dasl import DASL
from dasl_tf.models.popularity import Popularity
from dasl_tf.models import baselines
