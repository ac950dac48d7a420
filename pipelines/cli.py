"""What every command-line entry point of the package shares: its runner and its ``--help``.

:func:`run_command` is the one contract of the commands: an error the user
can act on (:class:`~dasl_tf.errors.DaslError`, a bad flag, a missing file)
ends the command with one ``<command>: error: <message>`` line on stderr and
exit status 2, before anything else is printed; any other exception is a bug
and keeps its traceback.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, List, NoReturn, Optional

from absl import app
from absl import flags

from dasl_tf import errors
from dasl_tf import filesystems

# Exit status of a command that refused its input (as argparse's usage errors).
USAGE_ERROR_STATUS = 2
# What a command reports as one error line: the package's own errors, bad flags and
# arguments, and the operating system's verdict on a path the user gave.
USER_ERRORS = (errors.DaslError, app.UsageError, flags.Error, FileNotFoundError,
               FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def fail(name: str, message: str) -> NoReturn:
  """Ends command ``name`` with ``name: error: message`` and exit status 2."""
  print(f"{name}: error: {message}", file=sys.stderr)
  sys.stdout.flush()
  sys.exit(USAGE_ERROR_STATUS)


def run_command(name: str, main: Callable[[List[str]], Optional[int]],
                known_only: bool = False, argv: Optional[List[str]] = None) -> None:
  """Parses the flags and runs ``main(argv)`` as command ``name``; never returns.

  Args:
    name: the command's name, as the user typed it (``dasl-train``).
    main: called with the arguments left after the flags (``argv[0]`` first);
      its return value, if any, is the exit status.
    known_only: leave unknown ``--flags`` in ``argv`` for ``main`` (Beam's
      pipeline options) instead of refusing them.
    argv: the command line, program name first (default: ``sys.argv``).
  """
  def parse(argv: List[str]) -> List[str]:
    try:
      return flags.FLAGS(argv, known_only=known_only)
    except flags.Error as e:
      fail(name, f"{e} (pass --help to see the flags)")

  def guarded(argv: List[str]) -> Optional[int]:
    try:
      return main(argv)
    except USER_ERRORS as e:
      fail(name, str(e).strip() or type(e).__name__)

  filesystems.run_main(lambda: app.run(guarded, argv=argv, flags_parser=parse))


def no_arguments(argv: List[str]) -> None:
  """Refuses positional arguments: a command's flags are its only input.

  Raises:
    app.UsageError: ``argv`` holds more than the program name.
  """
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")


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
