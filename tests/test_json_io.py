"""dasl_tf.json_io: the strict JSON reader (and the readers switched to it) and the one layout."""
import json
import os
import subprocess

import pytest

from dasl_tf import config as config_lib
from dasl_tf import errors
from dasl_tf import features as F
from dasl_tf import json_io
from dasl_tf import model_dir
from dasl_tf import publish
from dasl_tf.serving import spec as spec_lib
from tests import test_train_support as support


def _write(path, text: str) -> str:
  path.write_text(text, encoding="utf-8")
  return str(path)


def test_valid_json_reads_as_the_json_module_reads_it(tmp_path):
  text = '{"b": [1, 2.5, {"c": null}], "a": {"d": true, "e": "x"}}'
  assert json_io.load(_write(tmp_path / "ok.json", text)) == json.loads(text)


@pytest.mark.parametrize("text, key", [
    ('{"epochs": 1, "seed": 3, "epochs": 2}', "epochs"),
    ('{"model": {"units": 8, "units": 16}}', "model.units"),
    ('{"runs": [{"metrics": {}}, {"metrics": {"auc": 0.5, "auc": 0.6}}]}', "runs[1].metrics.auc"),
    ('[[{"x": 1}, {"x": 1, "x": 1}]]', "[0][1].x"),
])
def test_a_repeated_key_at_any_depth_names_the_file_and_the_key(tmp_path, text, key):
  path = _write(tmp_path / "repeats.json", text)
  with pytest.raises(errors.DataError) as caught:
    json_io.load(path)
  assert str(caught.value).startswith(f"{path}: key {key!r} appears more than once")


def test_a_truncated_file_names_the_file_line_and_column(tmp_path):
  text = '{\n  "splits": {\n    "train": ["a", "b"],\n    "test": ['
  path = _write(tmp_path / "cut.json", text)
  with pytest.raises(errors.DataError) as caught:
    json_io.load(path)
  line, column = text.count("\n") + 1, len(text) - text.rfind("\n")  # where the text ends
  message = str(caught.value)
  assert message.startswith(f"{path}: invalid JSON at line {line}, column {column}: ")
  assert message.endswith("(the file ends early: is it truncated?)")


def test_invalid_json_inside_the_file_is_not_called_truncated():
  with pytest.raises(errors.DataError) as caught:
    json_io.loads('{"a": 1,\n "b": tru}', "where.json")
  assert str(caught.value).startswith("where.json: invalid JSON at line 2, column 7: ")
  assert "truncated" not in str(caught.value)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_are_refused(tmp_path, constant):
  path = _write(tmp_path / "metrics.json", f'{{"auc_a": [0.5, {constant}]}}')
  with pytest.raises(errors.DataError) as caught:
    json_io.load(path)
  assert str(caught.value).startswith(f"{path}: {constant} is not a JSON value")


def test_errors_are_raised_as_the_callers_class():
  with pytest.raises(config_lib.ConfigError, match=r"^run\.json: key 'a' appears"):
    json_io.loads('{"a": 1, "a": 1}', "run.json", config_lib.ConfigError)


def test_dumps_has_one_layout_and_refuses_non_finite_numbers(tmp_path):
  value = {"b": [1, 0.25], "a": {"z": None, "y": "é"}}
  assert json_io.dumps(value) == (
      '{\n  "a": {\n    "y": "\\u00e9",\n    "z": null\n  },\n  "b": [\n    1,\n    0.25\n'
      '  ]\n}\n')
  with pytest.raises(ValueError, match=r"at 'b\[1\]'"):
    json_io.dumps({"b": [1.0, float("nan")]})
  assert json_io.finite_or_null({"b": [1.0, float("-inf")], "c": (float("nan"),)}) == {
      "b": [1.0, None], "c": [None]}
  path = str(tmp_path / "out.json")
  publish.write_json(path, value)
  with open(path, encoding="utf-8") as f:
    assert f.read() == json_io.dumps(value)


def _schema_dir(tmp_path, edit) -> str:
  """A directory with the schema.json of a small schema, its parsed JSON changed by ``edit``."""
  values = json.loads(F.DatasetSchema(num_users=12, splits={"train": ("t.tfrecord",)}).to_json())
  edit(values)
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  _write(data_dir / F.SCHEMA_FILE, json.dumps(values))
  return str(data_dir)


@pytest.mark.parametrize("edit, message", [
    (lambda v: v.update(num_user=12), "unknown key(s) ['num_user']"),
    (lambda v: v["feature_spec"].update(history_len=4),
     "unknown key(s) ['feature_spec.history_len']"),
    (lambda v: v.update(num_users="12"), "key 'num_users' must be an integer, got '12'"),
    (lambda v: v["feature_spec"].update(has_timestamp=1),
     "key 'feature_spec.has_timestamp' must be true or false, got 1"),
    (lambda v: v.update(splits={"train": "t.tfrecord"}),
     "key 'splits' must be an object of split name -> list of shard paths"),
    (lambda v: v.update(domain_names=["Books"]), "key 'domain_names' must be a list of two"),
    (lambda v: v.pop("num_items_a"), "missing key(s) ['num_items_a']"),
])
def test_a_malformed_schema_is_a_data_error_naming_the_file_and_the_key(tmp_path, edit,
                                                                         message):
  data_dir = _schema_dir(tmp_path, edit)
  with pytest.raises(errors.DataError) as caught:
    F.DatasetSchema.load(data_dir)
  path = os.path.join(data_dir, F.SCHEMA_FILE)
  assert str(caught.value).startswith(f"{path}: {message}")


def test_a_valid_schema_round_trips(tmp_path):
  schema = F.DatasetSchema(num_users=12, user_cat_vocab_sizes=(3, 4), validation_cut=5,
                           splits={"train": ("t.tfrecord",)})
  schema.save(str(tmp_path))
  assert F.DatasetSchema.load(str(tmp_path)) == schema


def test_model_dir_and_serving_spec_files_are_read_strictly(tmp_path):
  metrics = _write(tmp_path / "metrics.json", '{"auc_a": 0.5, "auc_a": 0.7}')
  with pytest.raises(errors.DataError, match=f"^{metrics}: key 'auc_a' appears"):
    model_dir.read_json(metrics)
  spec = _write(tmp_path / spec_lib.SPEC_FILE, '{"feature_spec": {"history_length": 4, '
                '"history_length": 5}, "top_n": 10}')
  with pytest.raises(errors.DataError, match=r"feature_spec\.history_length' appears"):
    spec_lib.ServingSpec.load(spec)


def test_train_on_a_truncated_schema_prints_one_error_line(tmp_path):
  data_dir = tmp_path / "data"
  (data_dir / "vocab").mkdir(parents=True)
  text = F.DatasetSchema().to_json()
  _write(data_dir / F.SCHEMA_FILE, text[:len(text) // 2])
  proc = support.run_cli("dasl_tf.pipelines.train",
                         [f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'model'}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 2, stderr[-3000:]
  lines = stderr.strip().splitlines()
  assert [line for line in lines if line.startswith("dasl-train:")] == lines[-1:], stderr[-3000:]
  path = data_dir / F.SCHEMA_FILE
  assert lines[-1].startswith(f"dasl-train: error: {path}: invalid JSON at line ")
  assert lines[-1].endswith("(the file ends early: is it truncated?)")
  assert "Traceback" not in stderr
  assert not (tmp_path / "model").exists()


def test_experiment_results_are_read_strictly(tmp_path):
  from dasl_tf import report  # pylint: disable=g-import-not-at-top  (imports TensorFlow)

  path = _write(tmp_path / "results.json", '[{"variant": "dasl", "variant": "din"}]')
  with pytest.raises(errors.DataError, match=f"^{path}: key '\\[0\\].variant' appears"):
    report.load_experiment_runs([str(tmp_path)])
  _write(tmp_path / "results.json", '{"variant": "dasl"}')
  with pytest.raises(errors.DataError, match="expected a list of runs"):
    report.load_experiment_runs([str(tmp_path)])
