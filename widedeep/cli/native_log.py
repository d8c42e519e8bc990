"""Keeps TensorFlow's native log lines off the `widedeep` command's stderr (unless `WIDEDEEP_DEBUG=1`).

The command calls `quiet_tensorflow` first thing; `import widedeep` does none of this.
`TF_CPP_MIN_LOG_LEVEL=3` silences TensorFlow's C++ logging once it runs. TensorFlow 2.20+
also logs through absl before `absl::InitializeLog()` runs, and those lines ignore
`TF_CPP_MIN_LOG_LEVEL`: importing it prints "All log messages before
absl::InitializeLog() ...", oneDNN and `cudart_stub` notices (twice, one per native
library), and the first look at the devices prints an E-level "failed call to cuInit" on
a machine without a GPU. `filtered_native_stderr` points file descriptor 2 at a
temporary file around such a block, then writes back every line that is not one of
TensorFlow's native log lines: Python warnings and errors printed meanwhile are kept.
On a machine with an NVIDIA driver (`/proc/driver/nvidia`), E- and F-level lines are
kept too, so a GPU that fails to start still says why.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

DEBUG_VARIABLE = "WIDEDEEP_DEBUG"
"""Set to 1 to see TensorFlow's native logs and full tracebacks."""

_NATIVE_LINE = re.compile(
    rb"^(?P<level>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]+\] "
    rb"|^WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|^To enable the following instructions: .* rebuild TensorFlow"
)


def debug_enabled() -> bool:
    """Whether `WIDEDEEP_DEBUG=1` asks for TensorFlow's logs and full tracebacks."""
    return os.environ.get(DEBUG_VARIABLE) == "1"


def keep_line(line: bytes, gpu_driver: bool) -> bool:
    """Whether a line written to stderr inside `filtered_native_stderr` is shown."""
    match = _NATIVE_LINE.match(line)
    if match is None:
        return True
    return gpu_driver and match.group("level") in (b"E", b"F")


@contextlib.contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Runs the block with TensorFlow's native log lines removed from stderr.

    Does nothing when `WIDEDEEP_DEBUG=1` or when stderr has no file descriptor.
    """
    try:
        descriptor = sys.__stderr__.fileno() if sys.__stderr__ is not None else -1
    except (AttributeError, OSError, ValueError):
        descriptor = -1
    if debug_enabled() or descriptor != 2:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            gpu_driver = os.path.exists("/proc/driver/nvidia")
            kept = [
                line
                for line in capture.read().splitlines(keepends=True)
                if keep_line(line, gpu_driver)
            ]
            if kept:
                os.write(2, b"".join(kept))


def quiet_tensorflow() -> None:
    """Imports TensorFlow and looks at the GPUs with TensorFlow's native log lines filtered out.

    First sets `KERAS_BACKEND=tensorflow` and, unless `WIDEDEEP_DEBUG=1`,
    `TF_CPP_MIN_LOG_LEVEL=3` (each only when unset). For the `widedeep` command, before
    anything imports TensorFlow: it changes the process's environment and file descriptor 2,
    which a library must not do. Once TensorFlow is imported (a second `main` in one process,
    a test) its start-up lines are past, and only the variables are set.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if not debug_enabled():
        # Level 3 keeps TensorFlow's C++ errors off the terminal too: a default `widedeep train`
        # printed "Tensor RefCount not reliable if buf_ points to a SubBuffer" 16 times per
        # evaluation pass at level 2 (TF 2.21). Real failures still raise Python exceptions.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    with filtered_native_stderr():
        # TensorFlow's import and its first look at the devices print native log lines
        # (oneDNN, CUDA on a machine without a GPU) that no setting silences.
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
