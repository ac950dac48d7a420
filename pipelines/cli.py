"""What every command-line entry point of the package shares: its flags listed by ``--help``."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from absl import flags


@contextlib.contextmanager
def key_flags() -> Iterator[None]:
  """Makes the flags defined in the block key flags of the running program.

  absl's ``--help`` lists the key flags of the main module, named after
  ``sys.argv[0]``; flags defined by an imported module (as a console script's
  ``define_flags()`` does) would otherwise be listed only by ``--helpfull``.
  """
  before = set(flags.FLAGS)
  yield
  for name in sorted(set(flags.FLAGS) - before):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
