"""Crash-safe output files: every file a run writes appears whole or not at all.

A file is written to a temporary file in the same directory and moved over the
target with `os.replace`, which is atomic on POSIX and Windows file systems: a
process killed while saving leaves the previous file (or none), never a
truncated one that loads as a corrupt model.

Example:

```python
from widedeep.io import atomic_path, write_json

write_json("runs/wd/metrics.json", {"auc": 0.71})
with atomic_path("runs/wd/model.keras") as tmp:
    model.save(tmp)
```
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "DamagedFileError",
    "OutputError",
    "atomic_path",
    "check_tfrecord_file",
    "check_writable_dir",
    "write_json",
]


class OutputError(ValueError):
    """An output path that cannot be written (a file where a directory should be, no permission)."""


class DamagedFileError(ValueError):
    """An input file that is truncated or otherwise not in its format; the message names it."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside `path`; on success it replaces `path` atomically.

    The temporary name keeps `path`'s extension (Keras picks the format from it).
    If the body raises, the temporary file is removed and `path` is untouched.

    Args:
        path: the file to (over)write.

    Returns:
        A context manager yielding the temporary path to write to.

    Example:

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = open(tmp, "w").write("hello")
    >>> open(target).read()
    'hello'
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    _, extension = os.path.splitext(name)
    # A fresh name, not a file: the writer creates it with the usual permissions.
    tmp = os.path.join(directory, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{extension}")
    try:
        yield tmp
        with open(tmp, "rb") as f:  # the bytes reach the disk before the rename publishes them
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _numpy_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Writes `payload` as indented JSON to `path` atomically (see `atomic_path`).

    Args:
        path: the JSON file.
        payload: a JSON-serialisable object; numpy scalars are written as numbers.
    """
    text = json.dumps(payload, indent=2, default=_numpy_scalar)  # fails before anything is written
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def check_writable_dir(path: str | os.PathLike, flag: str) -> None:
    """Creates directory `path` if needed and checks that files can be created in it.

    Args:
        path: the output directory.
        flag: the command-line flag naming it, for the message (e.g. `"--out"`).

    Raises:
        OutputError: one line naming `flag` and `path` when it is a file or cannot be written.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{flag} {path}: is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OutputError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None


def check_tfrecord_file(path: str | os.PathLike) -> None:
    """Checks that a TFRecord file is a whole sequence of records (catches truncated shards).

    Walks the record headers (an 8-byte length and a 4-byte checksum before each
    payload) without reading the payloads, so it costs one seek per record. A
    file cut short, or with a length that points past its end, is reported;
    a flipped byte inside a payload is caught later by TensorFlow's checksums.

    Args:
        path: the TFRecord file.

    Raises:
        DamagedFileError: one line naming the file and the byte offset of the damage.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    offset = 0
    with open(path, "rb") as f:
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                raise DamagedFileError(
                    f"damaged shard {path}: truncated record header at byte {offset} "
                    f"(the file has {size} bytes); write the dataset again"
                )
            length = int.from_bytes(header[:8], "little")
            end = offset + 12 + length + 4
            if end > size:
                raise DamagedFileError(
                    f"damaged shard {path}: the record at byte {offset} needs {length} bytes but "
                    f"the file ends at byte {size} (truncated); write the dataset again"
                )
            f.seek(end)
            offset = end
