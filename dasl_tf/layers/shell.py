"""One implementation of each layer's math, two thin shells: a tf_keras and a Keras 3 class.

A layer's math lives once, in a *body* class of its module (``MLPBody`` in
:mod:`dasl_tf.layers.mlp`, ...), written with TensorFlow ops and the Keras API
of its shell (``self._api.keras``: ``tf_keras`` or ``keras``). The shell
modules :mod:`dasl_tf.layers.keras2` and :mod:`dasl_tf.layers.keras3` make one
class per body with :func:`make_shell`: the body on top of that Keras's base
class (``Layer``, ``Regularizer``, ``Constraint``), registered for
serialization under the package ``"dasl_tf"``. The names ``MLP``, ``DualEmbedding``,
... of :mod:`dasl_tf.layers` and of each layer module resolve, at each access,
to the shell of the Keras ``tf.keras`` resolves to
(:func:`dasl_tf.keras_select.active_keras`), as ``tf.keras`` itself does.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable, Tuple

from dasl_tf import keras_select

PACKAGE = "dasl_tf"


class LayerBody:
  """Base of the layer bodies: a call refuses a caller of the other Keras.

  Attributes:
    _api: the shell module of the class (:mod:`dasl_tf.layers.keras2` or
      :mod:`~dasl_tf.layers.keras3`): ``_api.keras`` is its Keras,
      ``_api.KERAS`` its :mod:`~dasl_tf.keras_select` name, and the sibling
      classes (``_api.MLP``, ...) are of the same Keras.
  """

  _api: ModuleType

  def __call__(self, *args, **kwargs):
    keras_select.check_same_keras(self, self._api.KERAS, args, kwargs)
    return super().__call__(*args, **kwargs)

  @staticmethod
  def build_sublayer(layer: Any, input_shape: Any) -> None:
    """Builds ``layer`` now, under its own name scope, as its first call would.

    Variables then keep the names a first call gives them
    (``mlp/hidden_0/kernel``), unique within the model.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    with tf.name_scope(layer.name):
      layer.build(input_shape)


def make_shell(api: ModuleType, body: type, base: type, register: Callable[..., Any]) -> type:
  """The class ``body`` on top of ``base``, in module ``api``, registered with ``register``.

  Args:
    api: the shell module the class belongs to (its ``_api``).
    body: the body class; the shell is named after it without ``Body``.
    base: the Keras base class (``keras.layers.Layer``, ...).
    register: ``register_keras_serializable`` of that Keras.

  Returns:
    The registered class, ``"dasl_tf>Name"`` for serialization.
  """
  name = body.__name__.removesuffix("Body")
  doc = (f"{keras_select.NAMES[api.KERAS]} class of :class:`{body.__module__}.{body.__name__}`"
         f", which documents the math and the arguments.")
  shell = type(name, (body, base), {"__module__": api.__name__, "__qualname__": name,
                                    "__doc__": doc, "_api": api})
  return register(package=PACKAGE)(shell)



def make_shells(api: ModuleType, keras: ModuleType, register: Callable[..., Any]) -> None:
  """Sets one registered class per layer body on ``api`` (a shell module), for ``keras``.

  Args:
    api: the shell module (:mod:`dasl_tf.layers.keras2` or ``keras3``).
    keras: its Keras (``tf_keras`` or ``keras``), whose ``Layer``,
      ``Regularizer`` and ``Constraint`` the bodies are put on.
    register: that Keras's ``register_keras_serializable``.
  """
  # pylint: disable=g-import-not-at-top  (the layer modules import this one)
  from dasl_tf.layers import (autoencoder, dual_attention, dual_embedding, interaction, mlp,
                              sequence)

  layer = keras.layers.Layer
  for body, base in ((mlp.CheckpointedDropoutBody, layer), (mlp.MLPBody, layer),
                     (autoencoder.FeatureAutoencoderBody, layer),
                     (dual_embedding.OrthogonalityRegularizerBody, keras.regularizers.Regularizer),
                     (dual_embedding.OrthogonalRetractionBody, keras.constraints.Constraint),
                     (dual_embedding.DualEmbeddingBody, layer),
                     (dual_embedding.MultiDomainEmbeddingBody, layer),
                     (sequence.SequenceEncoderBody, layer),
                     (dual_attention.DualAttentionBody, layer),
                     (interaction.CandidateInteractionBody, layer)):
    shell = make_shell(api, body, base, register)
    setattr(api, shell.__name__, shell)


def active_keras_classes(*names: str) -> Callable[[str], type]:
  """A module ``__getattr__`` that resolves ``names`` to the classes of the active Keras.

  Args:
    *names: the class names the module resolves.

  Returns:
    ``__getattr__(name)``: the class ``name`` of
    ``dasl_tf.layers.keras2`` or ``dasl_tf.layers.keras3``, whichever
    :func:`dasl_tf.keras_select.active_keras` names.
  """
  known: Tuple[str, ...] = names

  def __getattr__(name: str) -> type:  # pylint: disable=invalid-name
    if name not in known:
      raise AttributeError(name)
    shells = importlib.import_module(keras_select.SHELL_MODULES[keras_select.active_keras()])
    return getattr(shells, name)

  return __getattr__


def keras_of(layer: Any) -> ModuleType:
  """The Keras module (``tf_keras`` or ``keras``) of a layer, class or instance.

  A dasl_tf class names its shell's Keras; any other Keras class is known by
  the package of its base classes.

  Raises:
    TypeError: ``layer`` is of neither Keras.

  Example:
    >>> import tf_keras
    >>> from dasl_tf.layers import keras2
    >>> keras_of(keras2.MLP) is tf_keras
    True
  """
  api = getattr(layer, "_api", None)
  if api is not None:
    return api.keras
  for base in (layer if isinstance(layer, type) else type(layer)).__mro__:
    if base.__module__.split(".")[0] in keras_select.NAMES:
      return importlib.import_module(base.__module__.split(".")[0])
  raise TypeError(f"{layer!r} is neither a tf_keras nor a Keras 3 object")
