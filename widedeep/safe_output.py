"""Crash-safe output files: whole files or none, and one line when the disk is full.

Every file a run writes goes through `atomic_path`: it is written under a
temporary name in the same directory, flushed to the disk (`fsync`) and moved
over the target with `os.replace`, which is atomic on POSIX file systems, and
the directory is synced so that the rename survives a power cut. A process
killed while saving leaves the previous file (or none), never a truncated one
that loads as a corrupt model. `write_json` is the one JSON writer (run files,
dataset `schema.json` and `meta.json`, search records). A dataset directory is
written as one unit: its shards and tables are synced, and its `meta.json`
appears last (see `widedeep.data.writer.DatasetWriter`).

Running out of disk space (`ENOSPC`, a quota, or TensorFlow's
`ResourceExhaustedError` saying so) while writing becomes a `NoSpaceError`
naming the output and about how much it needs, after what was half written is
removed. `widedeep.directory_lock` keeps a second process out of a directory in use.

Example:

```python
from widedeep.safe_output import atomic_path, write_json

write_json("runs/wd/metrics.json", {"auc": 0.71})
with atomic_path("runs/wd/model.keras") as tmp:
    model.save(tmp)
```
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from widedeep.errors import WidedeepError

__all__ = [
    "NoSpaceError",
    "OutputError",
    "atomic_path",
    "check_writable_dir",
    "is_out_of_space",
    "no_space_as_error",
    "remove_path",
    "sync_to_disk",
    "variables_bytes",
    "write_json",
]

_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


class OutputError(WidedeepError, ValueError):
    """An output path that cannot be written (a file where a directory should be, no permission)."""


class NoSpaceError(OutputError):
    """The disk (or the quota) filled up while writing `path`; what was half written is gone.

    Args:
        path: the output being written (a file or a directory).
        needed_bytes: about how many bytes the whole output takes.
        flag: the command-line flag that chooses where it goes, for the message.
    """

    def __init__(self, path: str | os.PathLike, needed_bytes: int, flag: str = "--out") -> None:
        self.path = os.fspath(path)
        self.needed_bytes = int(needed_bytes)
        self.flag = flag
        megabytes = self.needed_bytes / 2**20
        size = f"{max(megabytes, 0.1):.1f}" if megabytes < 10 else f"{megabytes:.0f}"
        super().__init__(
            f"no space left on device while writing {self.path} (about {size} MB needed); "
            f"free space or choose another {flag}"
        )


def is_out_of_space(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says that the disk or the quota is full.

    Python's `OSError` carries `errno.ENOSPC` / `errno.EDQUOT`; TensorFlow
    (`ResourceExhaustedError`), h5py and Arrow put the system's text for them in
    their messages; NumPy's `tofile` (and so `np.save`) reports the short write a
    full disk causes as `OSError: N requested and M written`, without the errno.

    Args:
        error: an exception.

    Returns:
        True for lack of space.

    Example:

    >>> import errno
    >>> is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_out_of_space(OSError(errno.EACCES, "Permission denied"))
    False
    """
    texts = [os.strerror(code) for code in _NO_SPACE_ERRNOS]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NoSpaceError):
            return True
        if isinstance(current, OSError) and current.errno in _NO_SPACE_ERRNOS:
            return True
        if any(text in str(current) for text in texts):
            return True
        if isinstance(current, OSError) and _SHORT_WRITE.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def no_space_as_error(
    path: str | os.PathLike,
    needed_bytes: int | Callable[[], int],
    flag: str = "--out",
    cleanup: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Turns running out of disk space inside the block into a `NoSpaceError` naming `path`.

    Other errors pass unchanged, and so does a `NoSpaceError` raised inside (it
    names the innermost output).

    Args:
        path: the output the block writes.
        needed_bytes: about how many bytes the output takes, or a function giving
            it (called only when the disk is full).
        flag: the command-line flag that chooses where the output goes.
        cleanup: called before raising, to remove what was half written.

    Returns:
        A context manager.
    """
    try:
        yield
    except NoSpaceError:
        if cleanup is not None:
            cleanup()
        raise
    except Exception as error:
        if not is_out_of_space(error):
            raise
        if cleanup is not None:
            cleanup()
        needed = needed_bytes() if callable(needed_bytes) else needed_bytes
        raise NoSpaceError(path, needed, flag) from error


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(folder, name))
            for folder, _, names in os.walk(path)
            for name in names
        )
    return os.path.getsize(path) if os.path.exists(path) else 0


def _fsync_directory(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform without directory handles (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno in _NO_SPACE_ERRNOS:
            raise
        # Some file systems refuse fsync on a directory (EINVAL): their renames are durable.
    finally:
        os.close(fd)


def sync_to_disk(paths: Iterable[str | os.PathLike]) -> None:
    """Flushes files, and directories with everything under them, to the disk (`fsync`).

    Args:
        paths: files or directories.
    """
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            for folder, _, names in os.walk(path, topdown=False):
                sync_to_disk(os.path.join(folder, name) for name in names)
                _fsync_directory(folder)
        else:
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def remove_path(path: str | os.PathLike) -> None:
    """Removes a file, or a directory with everything in it; nothing when it is absent.

    Args:
        path: the file or directory.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Removes what `atomic_path` left beside `name` in processes that were killed."""
    pattern = os.path.join(glob.escape(directory), f".{glob.escape(name)}.*-*")
    for path in glob.glob(pattern):
        match = re.fullmatch(r"\.(?:.*)\.(\d+)-[0-9a-f]{8}\.(?:tmp.*|old)", os.path.basename(path))
        if match and not _alive(int(match.group(1))):
            remove_path(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike,
    needed_bytes: int | Callable[[], int] | None = None,
    flag: str = "--out",
) -> Iterator[str]:
    """Yields a temporary path beside `path`; on success it replaces `path` atomically.

    The body writes a file or a directory (a SavedModel) at the temporary path;
    then everything written is synced to the disk, moved over `path` and the
    parent directory synced. The temporary name keeps `path`'s extension (Keras
    picks the format from it). If the body raises, the temporary file is removed
    and `path` is untouched; if the disk is full, that becomes a `NoSpaceError`.
    Temporary files beside `path` of processes that were killed are removed first.

    Args:
        path: the file or directory to (over)write; its parent must exist.
        needed_bytes: about how many bytes the output takes, for the message when
            the disk is full (default: what was written before it filled up).
        flag: the command-line flag that chooses where `path` goes.

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
    _remove_stale_temporaries(directory, name)
    # A fresh name, not a file: the writer creates it with the usual permissions.
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = os.path.join(directory, f".{name}.{token}.tmp{extension}")
    aside = os.path.join(directory, f".{name}.{token}.old")
    written = 0

    def needed() -> int:
        if needed_bytes is None:
            return written
        return needed_bytes() if callable(needed_bytes) else needed_bytes

    try:
        with no_space_as_error(path, needed, flag):
            try:
                yield tmp
            finally:
                written = _size(tmp)
            sync_to_disk([tmp])  # the bytes reach the disk before the rename publishes them
            if os.path.isdir(tmp) and os.path.isdir(path):
                os.replace(path, aside)  # a directory is replaced by moving the old one aside
            os.replace(tmp, path)
            _fsync_directory(directory)
    finally:
        remove_path(tmp)
        remove_path(aside)


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__} {value!r}")


def write_json(path: str | os.PathLike, payload: Any, flag: str = "--out") -> str:
    """Writes `payload` as indented JSON (and a final newline) to `path` atomically.

    The one JSON writer of the package: run files, dataset `schema.json` and
    `meta.json`, search records (see `atomic_path`).

    Args:
        path: the JSON file.
        payload: a JSON-serialisable object; numpy scalars and arrays are written as
            numbers and lists.
        flag: the command-line flag that chooses where `path` goes.

    Returns:
        The text written.

    Raises:
        TypeError: naming a value that is not serialisable (before anything is written).
        NoSpaceError: when the disk is full.
    """
    text = json.dumps(payload, indent=2, default=_json_value) + "\n"
    with atomic_path(path, len(text.encode()), flag) as tmp, open(tmp, "w") as f:
        f.write(text)
    return text


def variables_bytes(variables: Iterable[Any]) -> int:
    """The bytes the values of Keras or TensorFlow variables take (to estimate a save's size).

    Args:
        variables: objects with a `shape` and a numeric `dtype`; others count 0.

    Returns:
        The sum of `elements * itemsize`.
    """
    total = 0
    for variable in variables:
        dtype = getattr(variable.dtype, "as_numpy_dtype", variable.dtype)
        try:
            itemsize = np.dtype(dtype).itemsize
        except TypeError:
            continue
        if np.dtype(dtype).kind in "OSU":
            continue
        total += int(np.prod([d or 0 for d in variable.shape])) * itemsize
    return total


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
        if is_out_of_space(e):
            raise NoSpaceError(path, 0, flag) from None
        raise OutputError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None
