"""The TensorFlow Serving configs in serving/ parse with the tensorflow-serving-api protos."""
import pathlib

import pytest
import yaml
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

SERVING_DIR = pathlib.Path(__file__).resolve().parent.parent / "serving"


def batching_parameters_class():
  """``tensorflow.serving.BatchingParameters`` (session_bundle_config.proto, fields 1-7).

  The tensorflow-serving-api wheel ships no ``session_bundle_config_pb2``, so the
  message is declared here with the upstream names, numbers and types.
  """
  f = descriptor_pb2.FieldDescriptorProto
  fields = [("max_batch_size", 1, ".google.protobuf.Int64Value"),
            ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
            ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
            ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
            ("thread_pool_name", 5, ".google.protobuf.StringValue")]
  file_proto = descriptor_pb2.FileDescriptorProto(
      name="dasl_tests/session_bundle_config.proto", package="tensorflow.serving",
      syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
  message = file_proto.message_type.add(name="BatchingParameters")
  for name, number, type_name in fields:
    message.field.add(name=name, number=number, type=f.TYPE_MESSAGE, type_name=type_name,
                      label=f.LABEL_OPTIONAL)
  message.field.add(name="allowed_batch_sizes", number=6, type=f.TYPE_INT64,
                    label=f.LABEL_REPEATED)
  message.field.add(name="pad_variable_length_inputs", number=7, type=f.TYPE_BOOL,
                    label=f.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(descriptor_pb2.FileDescriptorProto.FromString(
      wrappers_pb2.DESCRIPTOR.serialized_pb).SerializeToString())
  pool.Add(file_proto)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_models_config_parses_and_serves_the_latest_version():
  config = text_format.Parse((SERVING_DIR / "models.config").read_text(),
                             model_server_config_pb2.ModelServerConfig())
  (model,) = config.model_config_list.config
  assert model.name == "dasl"
  assert model.model_platform == "tensorflow"
  assert model.base_path == "/models/dasl"
  assert model.model_version_policy.latest.num_versions == 1


PROFILES = ("batching_parameters.txt", "batching_parameters_latency.txt")
CONSTRAINTS = SERVING_DIR.parent / "constraints"


def _batching(name):
  return text_format.Parse((SERVING_DIR / name).read_text(), batching_parameters_class()())


@pytest.mark.parametrize("name", PROFILES)
def test_batching_parameters_parse_and_never_pad_inputs(name):
  params = _batching(name)
  assert params.max_batch_size.value >= max(params.allowed_batch_sizes)
  assert list(params.allowed_batch_sizes) == sorted(params.allowed_batch_sizes)
  assert params.allowed_batch_sizes[-1] == params.max_batch_size.value
  assert params.batch_timeout_micros.value > 0
  # Padding would insert a real item id into left-padded histories (see the file's comment).
  assert params.pad_variable_length_inputs is False


def test_the_latency_profile_waits_less_and_batches_smaller_than_the_throughput_one():
  throughput, latency = (_batching(name) for name in PROFILES)
  assert latency.batch_timeout_micros.value < throughput.batch_timeout_micros.value
  assert latency.max_batch_size.value < throughput.max_batch_size.value
  assert latency.allowed_batch_sizes[0] == 1  # a lone request is not padded to a batch


def _pin(constraints_file, package):
  for line in (CONSTRAINTS / constraints_file).read_text().splitlines():
    if line.startswith(f"{package}=="):
      return line.split("==")[1].split(";")[0].strip()
  raise AssertionError(f"{package} is not pinned in {constraints_file}")


def test_the_default_server_release_is_the_default_environments_tensorflow():
  """The image tag defaults to the default environment's serving release; the TFX one's
  exports (TensorFlow 2.21) name theirs in TF_SERVING_VERSION, as the file's comment says."""
  text = (SERVING_DIR / "docker-compose.yml").read_text()
  (service,) = yaml.safe_load(text)["services"].values()
  assert service["image"] == "tensorflow/serving:${TF_SERVING_VERSION:-%s}" % _pin(
      "default.txt", "tensorflow-serving-api")
  tensorflow = _pin("default.txt", "tensorflow")
  assert _pin("default.txt", "tensorflow-serving-api").split(".")[:2] == tensorflow.split(".")[:2]
  tfx_tensorflow = ".".join(_pin("tfx.txt", "tensorflow").split(".")[:2])
  assert f"TF_SERVING_VERSION={tfx_tensorflow}" in text


def test_docker_compose_serves_the_configs():
  compose = yaml.safe_load((SERVING_DIR / "docker-compose.yml").read_text())
  (service,) = compose["services"].values()
  assert {"8500:8500", "8501:8501"} <= set(service["ports"])
  mounts = {target: source for source, target, _ in (v.rsplit(":", 2) for v in service["volumes"])}
  assert mounts["/config/models.config"] == "./models.config"
  assert mounts["/config/batching_parameters.txt"] == (
      "./${BATCHING_PROFILE:-batching_parameters.txt}")
  text = (SERVING_DIR / "docker-compose.yml").read_text()
  assert all(name in text and (SERVING_DIR / name).is_file() for name in PROFILES)
  assert "/models/dasl" in mounts  # models.config's base_path
  flags = set(service["command"])
  assert {"--port=8500", "--rest_api_port=8501", "--model_config_file=/config/models.config",
          "--enable_batching=true", "--batching_parameters_file=/config/batching_parameters.txt",
          "--enable_model_warmup=true",
          "--xla_cpu_compilation_enabled=${XLA_CPU_COMPILATION:-false}"} <= flags
