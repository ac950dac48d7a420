"""The documentation against the code: generated flag tables, links, stated defaults, sizes."""
import dataclasses
import glob
import os
import re
import shlex
import subprocess
import sys

import numpy as np

from dasl_tf import config as config_lib
from dasl_tf import prepare as prepare_lib
from dasl_tf.prepare import config as prepare_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted([os.path.join(ROOT, name) for name in ("README.md", "BUILD.md", "CHANGELOG.md")]
               + glob.glob(os.path.join(ROOT, "docs", "*.md"))
               + glob.glob(os.path.join(ROOT, "docs", "*", "*.md")))
FLAGS_PAGE = os.path.join(ROOT, "docs", "flags.md")
CONFIGS = {"ModelConfig": config_lib.ModelConfig, "TrainConfig": config_lib.TrainConfig,
           "PrepareConfig": prepare_config.PrepareConfig}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.S | re.M)


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _rel(path):
  return os.path.relpath(path, ROOT)


def _prose(text):
  """The text outside fenced code blocks."""
  return FENCE.sub("", text)


def _code_blocks(text):
  return [m.group(0) for m in FENCE.finditer(text)]


def slug(heading):
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # link text only
  text = text.lower().replace("`", "")
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def anchors(text):
  """The anchors of a page's headings, with GitHub's -1, -2 suffixes for repeats."""
  seen, result = {}, set()
  for line in _prose(text).splitlines():
    m = re.match(r"#{1,6} (.+)$", line)
    if not m:
      continue
    base = slug(m.group(1))
    count = seen.get(base, 0)
    seen[base] = count + 1
    result.add(base if count == 0 else f"{base}-{count}")
  return result


def test_slug_follows_githubs_rule():
  assert slug("4. Dual Attention (3.4) — `DualAttention`") == "4-dual-attention-34--dualattention"
  assert slug("The model directory and what \"finished\" means") == (
      "the-model-directory-and-what-finished-means")
  assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_flags_page_is_what_the_code_generates():
  result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "flag_tables.py"),
                           "--check"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_every_relative_link_resolves_to_a_file_and_heading():
  broken = []
  for page in PAGES:
    for target in LINK.findall(_prose(_read(page))):
      if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        continue
      path, _, anchor = target.partition("#")
      resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
      if not os.path.exists(resolved):
        broken.append(f"{_rel(page)}: {target} (no such file)")
      elif anchor and resolved.endswith(".md") and anchor not in anchors(_read(resolved)):
        broken.append(f"{_rel(page)}: {target} (no such heading in {_rel(resolved)})")
  assert not broken, "\n".join(broken)


def test_sizes():
  build = _read(os.path.join(ROOT, "BUILD.md")).splitlines()
  readme = _read(os.path.join(ROOT, "README.md")).splitlines()
  assert len(build) <= 400
  assert len(readme) <= 150
  long_lines = [f"{name}:{i}" for name, lines in (("BUILD.md", build), ("README.md", readme))
                for i, line in enumerate(lines, 1) if len(line) > 200]
  assert not long_lines


def flag_defaults():
  """command -> flag -> the default docs/flags.md states (first backquoted value, or None)."""
  tables, command = {}, None
  for line in _read(FLAGS_PAGE).splitlines():
    if line.startswith("## "):
      command = line[3:].strip()
      tables[command] = {}
    m = re.match(r"\| `--(\w+)` \| ([^|]*) \|", line)
    if m and command:
      value = re.match(r"`([^`]*)`", m.group(2).strip())
      tables[command][m.group(1)] = value.group(1) if value else None
  return tables


def _same(stated, actual):
  stated, actual = stated.strip().strip("'\""), str(actual).strip()
  try:
    return float(stated) == float(actual)
  except ValueError:
    return stated.lower() == actual.lower() or (stated == "" and actual == "(empty)")


# "... (default `X`)", "... (default: X)" or "..., default X" right after a name.
DEFAULT_CLAIM = r"[^()`\n]{0,40}?(?:\(|,\s*)default:?\s*`?([^`),;\s]+)`?"
# A flag of a program other than the package's commands, stated with its default.
EXTERNAL_FLAGS = ("enable_model_warmup",)


def flag_claims(text):
  """(flag, stated default) for each default the text states for a flag."""
  for m in re.finditer(r"`(?:dasl[-\w.]* )?--(\w+)(?:[= ][^`]*)?`" + DEFAULT_CLAIM, text):
    yield m.group(1), m.group(2)
  for m in re.finditer(r"`(?:dasl[-\w.]* )?--(\w+)[= ]([^`\s]+)` \((?:the )?default\)", text):
    yield m.group(1), m.group(2)


def config_claims(text):
  """(dataclass name, field, stated default) for each default the text states for a field."""
  for m in re.finditer(r"`(ModelConfig|TrainConfig|PrepareConfig)\.(\w+)`" + DEFAULT_CLAIM, text):
    yield m.groups()
  for m in re.finditer(r"`(ModelConfig|TrainConfig|PrepareConfig)\.(\w+) = ([^`]+)`", text):
    yield m.groups()


def test_default_claims_are_found():
  text = ("`--train_negatives` (default `16`), `dasl-export --top_n`, default 10, "
          "`--split temporal` (default); `ModelConfig.dropout` (default 0.2), "
          "`TrainConfig.seed = 42`")
  assert list(flag_claims(text)) == [("train_negatives", "16"), ("top_n", "10"),
                                     ("split", "temporal")]
  assert list(config_claims(text)) == [("ModelConfig", "dropout", "0.2"),
                                       ("TrainConfig", "seed", "42")]


def test_stated_flag_defaults_match_the_code():
  tables = flag_defaults()
  assert "dasl-prepare" in tables and tables["dasl-prepare"]["train_negatives"] == "16"
  wrong = []
  for page in PAGES:
    if page == FLAGS_PAGE:
      continue
    for name, stated in flag_claims(_read(page)):
      actual = {command: table[name] for command, table in tables.items() if name in table}
      if not actual and name in EXTERNAL_FLAGS:
        continue
      if not any(_same(stated, v) for v in actual.values() if v is not None):
        wrong.append(f"{_rel(page)}: --{name} (default {stated}); code: {actual or 'no such flag'}")
  assert not wrong, "\n".join(wrong)


def test_stated_config_defaults_match_the_code():
  wrong = []
  for page in PAGES:
    for cls_name, name, stated in config_claims(_read(page)):
      fields = {f.name: f.default for f in dataclasses.fields(CONFIGS[cls_name])}
      if name not in fields or not _same(stated, fields[name]):
        wrong.append(f"{_rel(page)}: {cls_name}.{name} (default {stated}); "
                     f"code: {fields.get(name, 'no such field')}")
  assert not wrong, "\n".join(wrong)


def _command_lines(text):
  """Shell lines of the code blocks that run a dasl command, continuation lines joined."""
  for block in _code_blocks(text):
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
      line = line.split(" # ")[0].strip()
      m = re.match(r"(dasl-\w+)\s", line)
      if m:
        yield m.group(1), line


def test_flags_in_documented_command_lines_exist():
  tables = flag_defaults()
  unknown = []
  for page in PAGES:
    for command, line in _command_lines(_read(page)):
      if command not in tables:
        unknown.append(f"{_rel(page)}: unknown command {command}")
        continue
      if command == "dasl-prepare" and re.search(r"--runner[= ]beam", line):
        continue  # unknown flags are Beam's pipeline options
      for name in re.findall(r"(?<![\w-])--(\w+)", line):
        bare = name[2:] if name.startswith("no") else name
        if name not in tables[command] and bare not in tables[command] and name != "help":
          unknown.append(f"{_rel(page)}: {command} has no --{name}: {line}")
  assert not unknown, "\n".join(unknown)


def test_the_readme_csv_example_is_what_dasl_prepare_reads(tmp_path):
  readme = _read(os.path.join(ROOT, "README.md"))
  block = next(b for b in _code_blocks(readme) if "cat > books.csv" in b)
  header = block.splitlines()[2].split(",")
  defaults = prepare_config.PrepareConfig.__dataclass_fields__
  assert header == [defaults[f"{c}_column"].default for c in ("user", "item", "rating",
                                                                "timestamp")]
  prepare_line = next(line for command, line in _command_lines(readme)
                      if command == "dasl-prepare" and "books.csv" in line)
  args = shlex.split(prepare_line)[1:]
  values = dict(zip(args[::2], args[1::2]))
  assert values["--format"] == "csv"
  # 40 users with 10 records in each domain of 200 items: the training records hold enough
  # items for the 99 sampled negatives of every evaluation example.
  rng = np.random.default_rng(0)
  for name in ("books.csv", "movies.csv"):
    rows = [",".join(header)]
    for user in range(40):
      for k, item in enumerate(rng.choice(200, size=10, replace=False)):
        rows.append(f"u{user},{name[0]}{item},{rng.integers(1, 6)},{1609459200 + 3600 * k}")
    (tmp_path / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
  stats = prepare_lib.prepare(prepare_config.PrepareConfig(
      format=values["--format"], input_a=str(tmp_path / "books.csv"),
      input_b=str(tmp_path / "movies.csv"), domain_names=tuple(values["--domain_names"].split(",")),
      output_dir=str(tmp_path / "data")))
  assert stats["users"] == 40
  # The temporal split: the last round(20 * 0.1) = 2 of each user's 20 examples are test.
  assert stats["splits"]["test"]["examples"] == 80


def test_the_k_domain_layer_example_runs_in_both_keras(tmp_path):
  """docs/keras_layers.md's K-domain example, run as written, gives the shapes it states."""
  page = _read(os.path.join(ROOT, "docs", "keras_layers.md"))
  section = page[page.index("## More than two domains"):]
  block = _code_blocks(section)[0].split("\n", 1)[1].rsplit("```", 1)[0]
  script = tmp_path / "example.py"
  script.write_text(block + "\nprint(tuple(books_head.shape), tuple(mapped.shape))\n",
                    encoding="utf-8")
  for legacy in ("0", "1"):
    env = dict(os.environ, TF_USE_LEGACY_KERAS=legacy, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=env, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "(4, 1, 8) (4, 3, 3, 16)"
