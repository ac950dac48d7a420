"""Serving for dasl_tf: export to TensorFlow Serving, its configs, and a client.

* ``dasl_tf.serving.export``: ``dasl-export``, a trained model dir -> ``<base>/<version>/``.
* ``dasl_tf.serving.signatures``: the ``serving_default`` (raw-id ``tf.Example``),
  ``serving_indices``, ``predict``, ``recommend``, ``regress`` and ``classify`` signatures.
* ``dasl_tf.serving.warmup``: ``assets.extra/tf_serving_warmup_requests``.
* ``dasl_tf.serving.spec``: the request contract of an export (``serving_spec.json``) and
  the inputs of each signature, defined once.
* ``dasl_tf.serving.requests``: requests built and checked from raw user data (pure NumPy).
* ``dasl_tf.serving.client``: REST and gRPC transport, and the ``python -m`` client.
* ``models.config``, ``batching_parameters.txt``, ``docker-compose.yml``: the server.

Importing the package imports :mod:`dasl_tf` first, which selects Keras 2 before
TensorFlow is imported.
"""
import dasl_tf  # noqa: F401
