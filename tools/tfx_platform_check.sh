#!/usr/bin/env bash
# Can this machine run TFX 1.21 (`make tfx`)? Exit 0 if it can; otherwise print one
# line naming what is missing and exit 1.
#
# TFX 1.21's compiled parts (ml-metadata, tensorflow-data-validation) ship only
# manylinux_2_39 wheels: glibc >= 2.39 and a matching libstdc++ (Debian 13 or newer).
#
# Usage: tools/tfx_platform_check.sh PYTHON   (the interpreter for .venv-tfx; may be empty)
set -u
python="${1:-}"
required_glibc="2.39"

glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
if [ -z "$glibc" ]; then
  glibc="$(ldd --version 2>/dev/null | head -n 1 | awk '{print $NF}')"
fi
if [ -z "$glibc" ]; then
  echo "TFX 1.21 needs glibc >= $required_glibc (Debian 13 or newer); this machine has no glibc"
  exit 1
fi
lowest="$(printf '%s\n%s\n' "$required_glibc" "$glibc" | sort -V | head -n 1)"
if [ "$lowest" != "$required_glibc" ]; then
  echo "TFX 1.21 needs glibc >= $required_glibc (Debian 13 or newer); this machine has glibc $glibc"
  exit 1
fi
if [ -z "$python" ]; then
  echo "TFX 1.21 needs Python 3.10, 3.11, 3.12 or 3.13; none was found on PATH"
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' \
    2>/dev/null; then
  echo "TFX 1.21 needs Python 3.10, 3.11, 3.12 or 3.13; $python is $("$python" -V 2>&1)"
  exit 1
fi
exit 0
