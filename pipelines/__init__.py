"""The batch jobs of dasl_tf, installed as ``dasl_tf.pipelines``.

* ``prepare``: ``dasl-prepare``, raw logs -> TFRecords (local or Apache Beam).
* ``train``: ``dasl-train``, train, select on validation, test once, export.
* ``experiment`` (+ ``grid``): ``dasl-experiment``, variants x seeds or folds, as tables.
* ``tfx_trainer``: the TFX Trainer ``run_fn``.
* ``tfx_pipeline``: the TFX 1.21 pipeline (ImportExampleGen to Pusher, ``LocalDagRunner``;
  the TFX environment only, ``make tfx``).
* ``demo``: the main job on the embedded synthetic data (``make demo``).
* ``cli``: what the binaries share (their flags listed by ``--help``).
"""
