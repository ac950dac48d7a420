"""The layers as Keras 3 (``keras``) classes, whatever ``TF_USE_LEGACY_KERAS`` says.

They need the TensorFlow backend (``KERAS_BACKEND=tensorflow``, Keras's
default): the math is TensorFlow ops, shared with the Keras 2 classes. Each class is a thin shell over the body in its module (:mod:`dasl_tf.layers.shell`),
registered for Keras 3 serialization (``.keras`` files) as ``"dasl_tf>Name"``. Importing this
module does not change which Keras ``tf.keras`` resolves to.

Example:
  >>> import keras
  >>> from dasl_tf.layers import keras3
  >>> issubclass(keras3.MLP, keras.layers.Layer)
  True
"""
import sys

import keras

from dasl_tf import keras_select
from dasl_tf.layers import shell

KERAS = keras_select.KERAS3
if keras.backend.backend() != "tensorflow":
  raise ImportError(
      f"dasl_tf's Keras 3 layers need the TensorFlow backend (their math is TensorFlow ops, "
      f"shared with the Keras 2 layers and the SavedModel export), but KERAS_BACKEND is "
      f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before importing keras.")

shell.make_shells(sys.modules[__name__], keras, keras.saving.register_keras_serializable)
