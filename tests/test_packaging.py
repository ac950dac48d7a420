"""The installed distribution: one top-level package, ``dasl_tf``, with working console scripts."""
import pathlib
import subprocess
import sys
import zipfile

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CONSOLE_SCRIPTS = ("dasl-prepare", "dasl-train", "dasl-export", "dasl-experiment", "dasl-demo")


def test_wheel_holds_only_the_dasl_tf_package(tmp_path):
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--quiet", "-w", str(tmp_path), str(REPO_ROOT)], check=True,
                 capture_output=True, text=True)
  wheel, = tmp_path.glob("dasl_tf-*.whl")
  names = zipfile.ZipFile(wheel).namelist()
  top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(
      (".dist-info", ".data"))}
  assert top_level == {"dasl_tf"}
  for module in ("dasl_tf/pipelines/train.py", "dasl_tf/serving/export.py",
                 "dasl_tf/serving/models.config", "dasl_tf/serving/batching_parameters.txt"):
    assert module in names, module
  entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
  text = zipfile.ZipFile(wheel).read(entry_points).decode()
  assert "dasl-train = dasl_tf.pipelines.train:main" in text
  assert "dasl-export = dasl_tf.serving.export:main" in text


def test_console_scripts_of_the_installed_package_start():
  bin_dir = pathlib.Path(sys.executable).parent
  for script in CONSOLE_SCRIPTS:
    proc = subprocess.run([str(bin_dir / script), "--helpshort"], capture_output=True,
                          text=True, cwd="/", timeout=300)
    assert "--" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr, script
