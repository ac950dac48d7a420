"""The layers as Keras 2 (``tf_keras``) classes, whatever ``TF_USE_LEGACY_KERAS`` says.

Each class is a thin shell over the body in its module (:mod:`dasl_tf.layers.shell`),
registered for tf_keras serialization as ``"dasl_tf>Name"``. Importing this
module does not change which Keras ``tf.keras`` resolves to.

Example:
  >>> import tf_keras
  >>> from dasl_tf.layers import keras2
  >>> issubclass(keras2.MLP, tf_keras.layers.Layer)
  True
"""
import sys

import tf_keras

from dasl_tf import autograph_rules  # noqa: F401  pylint: disable=unused-import
from dasl_tf import keras_select
from dasl_tf.layers import shell

KERAS = keras_select.KERAS2
keras = tf_keras

shell.make_shells(sys.modules[__name__], tf_keras, tf_keras.utils.register_keras_serializable)
