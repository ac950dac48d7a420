"""Writes docs/flags.md, the flags of every command, from the commands' own ``define_flags()``.

Usage (from the repository root, with the project's virtualenv)::

  python tools/flag_tables.py            # (re)writes docs/flags.md
  python tools/flag_tables.py --check    # exit status 1, with a diff, when docs/flags.md differs
  python tools/flag_tables.py --print    # the text on stdout

Each command module is imported and its ``define_flags()`` called on absl's
global ``FLAGS``; the flags the call added are read (name, default, help, and
whether it is required), then deleted again, so that the next command may
define flags of the same name. Run it as a script (a fresh interpreter): a
process whose ``FLAGS`` already hold a command's flags would see none added.
The text depends on the code only (definition order, no times, no paths).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "flags.md")

# (command as typed, module, what it does).
COMMANDS = (
    ("dasl-prepare", "dasl_tf.pipelines.prepare", "raw interaction logs of K >= 2 domains -> TFRecords"),
    ("dasl-train", "dasl_tf.pipelines.train", "train, select the epoch on validation, test once, export"),
    ("dasl-experiment", "dasl_tf.pipelines.experiment", "variants x seeds (or folds) -> one table"),
    ("dasl-demo", "dasl_tf.pipelines.demo", "the whole path on synthetic data (`make demo`)"),
    ("dasl-export", "dasl_tf.serving.export", "model directory -> versioned SavedModel"),
    ("dasl_tf.serving.client", "dasl_tf.serving.client", "send rows to TensorFlow Serving"),
)
# Commands whose flags left unset (None) keep the value of the run's config.
CONFIG_COMMANDS = ("dasl-train", "dasl-experiment")
# absl's mark_flag_as_required registers a validator with this message.
_REQUIRED_MESSAGE = "must have a value other than None"


@dataclasses.dataclass(frozen=True)
class FlagRow:
  """One flag of one command, as docs/flags.md lists it."""
  name: str
  default: str
  help: str


def _config_defaults() -> Dict[str, Tuple[str, object]]:
  """Field name -> (dataclass name, default) of ModelConfig and TrainConfig."""
  from dasl_tf import config as config_lib  # pylint: disable=import-outside-toplevel
  defaults = {}
  for cls in (config_lib.ModelConfig, config_lib.TrainConfig):
    for field in dataclasses.fields(cls):
      if field.default is not dataclasses.MISSING:
        defaults[field.name] = (cls.__name__, field.default)
  return defaults


def format_value(value: object) -> str:
  """A default as the command line would spell it."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (list, tuple)):
    return ",".join(format_value(v) for v in value)
  return str(value)


def _cell(text: str) -> str:
  """Text for one Markdown table cell."""
  return " ".join(text.split()).replace("|", "\\|")


def _required(flag) -> bool:
  return any(_REQUIRED_MESSAGE in getattr(v, "message", "") for v in flag.validators)


def collect(command: str, module_name: str, config_defaults) -> List[FlagRow]:
  """The flags ``module_name.define_flags()`` adds to absl's FLAGS, in definition order."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  module = importlib.import_module(module_name)
  before = set(flags.FLAGS)
  module.define_flags()
  added = [name for name in flags.FLAGS if name not in before]
  if not added:
    raise RuntimeError(f"{module_name}.define_flags() added no flag: run this tool as a "
                       "script, in a process that has not defined them yet")
  rows = []
  for name in added:
    flag = flags.FLAGS[name]
    help_text = flag.help or ""  # an enum's help starts with its choices: <a|b>: ...
    if flag.default is not None:
      default = f"`{format_value(flag.default)}`" if format_value(flag.default) else "(empty)"
    elif command in CONFIG_COMMANDS and name in config_defaults:
      cls_name, value = config_defaults[name]
      default = f"`{format_value(value)}` ({cls_name}.{name})"
    else:
      default = "(none)"
    if _required(flag):
      default = "**required**"
    rows.append(FlagRow(name, default, _cell(help_text)))
  for name in added:
    delattr(flags.FLAGS, name)
  return rows


def render(tables: Sequence[Tuple[str, str, str, List[FlagRow]]]) -> str:
  """The text of docs/flags.md."""
  lines = [
      "# Flags of every command",
      "",
      "Generated from each command's `define_flags()` by `python tools/flag_tables.py`; do not",
      "edit by hand (`python tools/flag_tables.py --check` and `tests/test_docs.py` fail when",
      "this page and the code differ). Every command also prints its flags with `--help`.",
      "For `dasl-train` and `dasl-experiment`, a flag left unset keeps the value of the run's",
      "config (`--config`, else the dataclass default shown); see",
      "[training.md](training.md#configuration-precedence).",
      "",
  ]
  for command, module_name, summary, _ in tables:
    anchor = command.replace(".", "").lower()
    lines.append(f"- [`{command}`](#{anchor}): {summary}")
  for command, module_name, summary, rows in tables:
    lines += ["", f"## {command}", "",
              f"{summary[0].upper()}{summary[1:]}; also `python -m {module_name}`.", "",
              "| flag | default | help |", "|---|---|---|"]
    lines += [f"| `--{row.name}` | {row.default} | {row.help} |" for row in rows]
  return "\n".join(lines) + "\n"


def generate() -> str:
  """Imports every command and renders its flags."""
  sys.path.insert(0, ROOT)
  config_defaults = _config_defaults()
  tables = [(command, module, summary, collect(command, module, config_defaults))
            for command, module, summary in COMMANDS]
  return render(tables)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--check", action="store_true",
                    help="exit 1 (printing a diff) when docs/flags.md differs from the code")
  mode.add_argument("--print", action="store_true", help="print the text, write nothing")
  args = parser.parse_args(argv)
  text = generate()
  if args.print:
    sys.stdout.write(text)
    return 0
  if args.check:
    try:
      with open(OUTPUT, encoding="utf-8") as f:
        current = f.read()
    except FileNotFoundError:
      current = ""
    if current == text:
      return 0
    sys.stdout.writelines(difflib.unified_diff(
        current.splitlines(True), text.splitlines(True), "docs/flags.md", "generated"))
    print("docs/flags.md is out of date: run python tools/flag_tables.py", file=sys.stderr)
    return 1
  with open(OUTPUT, "w", encoding="utf-8") as f:
    f.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
