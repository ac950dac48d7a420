"""Packaging for dasl_tf: the library, its batch pipelines and its serving tools."""
import setuptools

# Ranges admit both supported environments: the default one (TensorFlow 2.16,
# with tensorflow-io; constraints/default.txt) and the TFX one (TensorFlow
# 2.21, TFX 1.21; constraints/tfx.txt). Each environment installs with its
# constraints file, which pins every package.
INSTALL_REQUIRES = [
    "tensorflow>=2.16.2,<2.22",
    "tf-keras>=2.16.0,<2.22",
    # TensorFlow 2.21 no longer pulls TensorBoard in; the training job writes its logs.
    "tensorboard>=2.16.2,<2.22",
    "tensorflow-recommenders>=0.7.7,<0.8",
    "tensorflow-serving-api>=2.16.1,<2.22",
    "numpy>=1.26.4,<3",
    "protobuf>=4.25.9,<7",
    "absl-py>=1.0,<3",
    "scipy",
    "pyarrow>=14,<26",
    "matplotlib",
    # schema.pbtxt and stats.pb of dasl-prepare (TFX / TFDV protos; pure protobuf).
    "tensorflow-metadata>=1.16.1,<1.22",
    # dasl-prepare writes TFRecords without TensorFlow (dasl_tf/prepare/tfrecord.py);
    # Beam's WriteToTFRecord needs it too.
    "google-crc32c",
]

EXTRAS_REQUIRE = {
    # s3://, hdfs://, viewfs://, har:// and az:// paths: tensorflow-io's compiled
    # filesystems, which load on TensorFlow 2.16 only (gs:// is built in).
    "remote": ["tensorflow-io==0.37.1"],
    "beam": ["apache-beam>=2.77.0,<3"],
    # wheel: tests/test_packaging.py builds one; moto: the S3-compatible server of
    # tests/test_remote_storage.py (started on 127.0.0.1 by the test); pytest-xdist: `make
    # test` runs the suite in one process per core; pytest-timeout: a test that hangs fails.
    "dev": ["pytest", "pytest-xdist>=3.5", "pytest-timeout>=2.3", "hypothesis", "wheel",
            "moto[server]==5.1.22"],
}

setuptools.setup(
    name="dasl_tf",
    version="0.1.0",
    description="Dual Attentive Sequential Learning (KDD'21) for cross-domain CTR prediction, "
    "as TensorFlow/Keras layers, batch pipelines and a TensorFlow Serving export.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    # 3.13 for the TFX environment only (NumPy 2, Debian 13's Python); the default
    # environment's pins (TensorFlow 2.16, NumPy 1.26) need 3.10-3.12 (`make venv`).
    python_requires=">=3.10,<3.14",
    # One installed package: the repository's pipelines/ and serving/ folders
    # are its subpackages dasl_tf.pipelines and dasl_tf.serving.
    packages=setuptools.find_packages(include=["dasl_tf", "dasl_tf.*"]) + [
        "dasl_tf.pipelines", "dasl_tf.serving"],
    package_dir={"dasl_tf.pipelines": "pipelines", "dasl_tf.serving": "serving"},
    package_data={"dasl_tf.serving": ["*.config", "*.txt", "*.yml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "dasl-prepare=dasl_tf.pipelines.prepare:main",
            "dasl-train=dasl_tf.pipelines.train:main",
            "dasl-export=dasl_tf.serving.export:main",
            "dasl-experiment=dasl_tf.pipelines.experiment:main",
            "dasl-demo=dasl_tf.pipelines.demo:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
