"""Peak memory of ``dasl-prepare --runner beam``: launcher, runner and workers, by input size.

The input is Douban book + music (``../shared/data/douban_book_music``) made
``scale`` times larger: every user is copied ``scale`` times under new ids.
Each scale runs the Beam driver as a cluster would, in three kinds of process:

  * the launcher: ``dasl-prepare --runner beam --beam_runner PortableRunner``,
    which builds and submits the pipeline and waits;
  * the runner: Beam's local job service, which schedules the stages and
    holds the shuffled data between them (the part a managed service such as
    Dataflow Shuffle holds on a cluster);
  * the workers: SDK worker processes started by Beam's external worker pool,
    which run every pass over the data.

It polls the peak resident memory (``VmHWM``) of every process of each kind
and prints a Markdown table, with the local driver's peak for comparison.

Usage (from the repository root, in the default environment)::

  python bench/beam_memory.py --scales=1,10 --workers=2
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

DOUBAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                      "douban_book_music")


def scaled_input(source: str, target: str, scale: int) -> int:
  """Writes ``source`` with every user copied ``scale`` times; returns the rows written."""
  rows = 0
  with open(source, encoding="utf-8") as f:
    lines = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
  with open(target, "w", encoding="utf-8") as out:
    for copy in range(scale):
      for user, rest in lines:
        out.write(f"{user}_{copy}\t{rest}\n")
        rows += 1
  return rows


def _peak_kib(pid: int) -> int:
  try:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    pass
  return 0


def _children() -> Dict[int, List[int]]:
  tree: Dict[int, List[int]] = {}
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat", encoding="ascii") as f:
        parent = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
      continue
    tree.setdefault(parent, []).append(int(entry))
  return tree


def _descendants(pid: int, tree: Dict[int, List[int]]) -> List[int]:
  out, stack = [], list(tree.get(pid, []))
  while stack:
    child = stack.pop()
    out.append(child)
    stack.extend(tree.get(child, []))
  return out


class PeakMemory:
  """Polls the peak memory of named processes and their descendants."""

  def __init__(self, roots: Dict[str, int], interval_s: float = 0.2):
    self._roots = roots
    self._interval_s = interval_s
    self.peaks: Dict[str, Dict[int, int]] = {name: {} for name in roots}
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._poll, daemon=True)

  def __enter__(self) -> "PeakMemory":
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join()

  def _poll(self) -> None:
    while not self._stop.is_set():
      tree = _children()
      for name, root in self._roots.items():
        for pid in [root] + _descendants(root, tree):
          peak = _peak_kib(pid)
          if peak:
            self.peaks[name][pid] = max(self.peaks[name].get(pid, 0), peak)
      self._stop.wait(self._interval_s)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _prepare_command(inputs: Dict[str, str], output_dir: str, runner: str) -> List[str]:
  return [sys.executable, "-m", "dasl_tf.pipelines.prepare", "--format=douban",
          f"--input_a={inputs['a']}", f"--input_b={inputs['b']}", f"--output_dir={output_dir}",
          f"--runner={runner}"]


def _wait_for_port(port: int, timeout_s: float = 60.0) -> None:
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    with socket.socket() as s:
      if s.connect_ex(("127.0.0.1", port)) == 0:
        return
    time.sleep(0.2)
  raise RuntimeError(f"nothing listens on port {port} after {timeout_s} s")


def run_beam(inputs: Dict[str, str], output_dir: str, workers: int, block_mib: int):
  """Runs the Beam driver on a local job service and worker pool; returns (seconds, peaks)."""
  job_port, pool_port = _free_port(), _free_port()
  services = [
      subprocess.Popen([sys.executable, "-m",
                        "apache_beam.runners.portability.local_job_service_main",
                        f"--port={job_port}"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL),
      # The pool starts each worker as `python ...`: this environment's Python.
      subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                        f"--service_port={pool_port}"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL,
                       env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep
                            + os.environ.get("PATH", "")})]
  try:
    _wait_for_port(job_port)
    _wait_for_port(pool_port)
    command = _prepare_command(inputs, output_dir, "beam") + [
        "--beam_runner=PortableRunner", f"--block_bytes={block_mib * 2**20}",
        f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL",
        f"--environment_config=localhost:{pool_port}", f"--sdk_worker_parallelism={workers}",
        # The launcher's wait on the job's state stream times out after this.
        "--job_server_timeout=7200"]
    start = time.time()
    launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with PeakMemory({"launcher": launcher.pid, "runner": services[0].pid,
                     "workers": services[1].pid}) as memory:
      _, stderr = launcher.communicate()
    if launcher.returncode:
      raise RuntimeError(f"dasl-prepare failed:\n{stderr.decode()[-3000:]}")
    # The pool process itself only forks workers; its own peak is not a worker's.
    memory.peaks["workers"].pop(services[1].pid, None)
    return time.time() - start, memory.peaks
  finally:
    for service in services:
      service.kill()
      service.wait()


def run_local(inputs: Dict[str, str], output_dir: str):
  start = time.time()
  process = subprocess.Popen(_prepare_command(inputs, output_dir, "local"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  with PeakMemory({"local": process.pid}) as memory:
    _, stderr = process.communicate()
  if process.returncode:
    raise RuntimeError(f"dasl-prepare failed:\n{stderr.decode()[-3000:]}")
  return time.time() - start, memory.peaks["local"][process.pid]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", default=DOUBAN)
  parser.add_argument("--scales", default="1,10")
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--block_mib", type=int, default=4,
                      help="--block_bytes of the run, in MiB (Douban x10 is about 19 MiB)")
  args = parser.parse_args()
  sources = {"a": os.path.join(args.data_dir, "douban_book", "ratings.dat"),
             "b": os.path.join(args.data_dir, "douban_music", "ratings.dat")}
  for path in sources.values():
    if not os.path.exists(path):
      sys.exit(f"{path} not found: this benchmark reads Douban book + music (--data_dir)")
  print("| input | rows | driver | seconds | launcher peak | runner peak | workers (peak each) |")
  print("|---|---|---|---|---|---|---|")
  for scale in [int(s) for s in args.scales.split(",")]:
    root = tempfile.mkdtemp(prefix="dasl_tf-beam-memory-")
    try:
      inputs = {k: os.path.join(root, f"{k}.dat") for k in sources}
      rows = sum(scaled_input(sources[k], inputs[k], scale) for k in sources)
      seconds, peak = run_local(inputs, os.path.join(root, "local"))
      print(f"| Douban x{scale} | {rows:,} | local | {seconds:.0f} | {peak / 1024:.0f} MiB | - | - |",
            flush=True)
      seconds, peaks = run_beam(inputs, os.path.join(root, "beam"), args.workers,
                                args.block_mib)
      launcher = max(peaks["launcher"].values()) / 1024
      runner = max(peaks["runner"].values()) / 1024
      workers = ", ".join(f"{v / 1024:.0f}" for v in sorted(peaks["workers"].values()))
      print(f"| Douban x{scale} | {rows:,} | beam | {seconds:.0f} | {launcher:.0f} MiB | "
            f"{runner:.0f} MiB | {len(peaks['workers'])}: {workers} MiB |", flush=True)
    finally:
      shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()
