"""Serving for dasl_tf: export to TensorFlow Serving, its configs, and a client.

* ``serving.export``: ``dasl-export``, a trained model dir -> ``<base>/<version>/``.
* ``serving.signatures``: the ``serving_default``, ``predict`` and ``recommend`` signatures.
* ``serving.warmup``: ``assets.extra/tf_serving_warmup_requests``.
* ``serving.spec``: the request contract of an export (``serving_spec.json``).
* ``serving.client``: REST and gRPC requests from raw user data.
* ``models.config``, ``batching_parameters.txt``, ``docker-compose.yml``: the server.

Importing the package imports :mod:`dasl_tf` first, which selects Keras 2 before
TensorFlow is imported.
"""
import dasl_tf  # noqa: F401
