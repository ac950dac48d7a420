"""Records per second of ``dasl-prepare`` end to end, and its peak memory.

Each run is a fresh ``python -m dasl_tf.pipelines.prepare`` process, timed from start
to exit (interpreter start-up and imports included; the local runner imports no
TensorFlow); the time the library itself reports (``stats.json`` "seconds":
reading to the renamed output directory) is printed beside it.

  .venv/bin/python bench/prepare_throughput.py --dataset douban
  .venv/bin/python bench/prepare_throughput.py --dataset ciao
  .venv/bin/python bench/prepare_throughput.py --dataset synthetic --num_users 30000
  .venv/bin/python bench/prepare_throughput.py --dataset synthetic --num_users 7500,30000

With several ``--num_users`` the peak-memory column shows how memory grows
with the input (it should grow linearly).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))


# Runs the dasl-prepare CLI, then prints the process's own peak RSS (VmHWM, KiB) as the
# last line. (getrusage's ru_maxrss would carry over the parent's peak across exec.)
_CHILD = ("import runpy\n"
          "try:\n"
          "  runpy.run_module('dasl_tf.pipelines.prepare', run_name='__main__')\n"
          "finally:\n"
          "  status = open('/proc/self/status').read().splitlines()\n"
          "  print([l.split()[1] for l in status if l.startswith('VmHWM')][0])\n")


def _run_prepare(flags, output_dir):
  """Runs dasl-prepare in a child process; returns (wall seconds, peak RSS MiB, stats)."""
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-c", _CHILD, *flags, "--output_dir", output_dir,
                         "--verbosity=-1"], check=True, cwd=REPO, env=env,
                        stdout=subprocess.PIPE, text=True)
  wall = time.perf_counter() - start
  peak_kib = int(proc.stdout.strip().splitlines()[-1])
  with open(os.path.join(output_dir, "stats.json"), encoding="utf-8") as f:
    stats = json.load(f)
  return wall, peak_kib / 1024, stats


def _report(name, wall, peak_mib, stats):
  records = stats["domains"]["A"]["rows_read"] + stats["domains"]["B"]["rows_read"]
  examples = sum(s["examples"] for s in stats["splits"].values())
  print(f"{name:>24}: {records:>9,} records -> {examples:>9,} examples | end to end "
        f"{wall:6.2f} s = {records / wall:>9,.0f} records/s | library {stats['seconds']:6.2f} s "
        f"= {records / stats['seconds']:>9,.0f} records/s | peak RSS {peak_mib:7.0f} MiB")


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", choices=["douban", "ciao", "synthetic"], default="douban")
  parser.add_argument("--num_users", default="30000",
                      help="synthetic: comma-separated user counts (about 34 records each)")
  parser.add_argument("--runs", type=int, default=1, help="repetitions per input")
  args = parser.parse_args()
  print(f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}")
  with tempfile.TemporaryDirectory() as tmp:
    inputs = []
    if args.dataset == "douban":
      root = DATA / "douban_book_music"
      inputs.append(("douban book+music", [
          "--format", "douban", "--input_a", str(root / "douban_book" / "ratings.dat"),
          "--input_b", str(root / "douban_music" / "ratings.dat")]))
    elif args.dataset == "ciao":
      inputs.append(("ciao DVDs+Books", ["--format", "mat", "--input",
                                         str(DATA / "ciao_tang" / "rating_with_timestamp.mat"),
                                         "--category_a", "1", "--category_b", "2"]))
    else:
      from dasl_tf import synthetic  # pylint: disable=g-import-not-at-top
      for users in (int(u) for u in args.num_users.split(",")):
        start = time.perf_counter()
        paths = synthetic.generate(os.path.join(tmp, f"raw-{users}"), synthetic.SyntheticConfig(
            num_users=users, num_items_a=5000, num_items_b=5000, seed=0))
        print(f"generated {users:,} users in {time.perf_counter() - start:.1f} s")
        inputs.append((f"synthetic {users:,} users", ["--format", "csv", *[
            f"--{k}={v}" for k, v in paths.items()]]))
    for name, flags in inputs:
      for run in range(args.runs):
        _report(name, *_run_prepare(flags, os.path.join(tmp, f"out-{len(name)}-{run}")))


if __name__ == "__main__":
  main()
