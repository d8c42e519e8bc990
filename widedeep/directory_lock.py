"""One process per directory: `directory_lock` refuses a second `train`, `simulate` or `prepare`.

The lock is an `fcntl.flock`, which the operating system releases when its holder
exits, however it ends: a killed run never blocks the next one.

Example:

```python
from widedeep.directory_lock import directory_lock

with directory_lock("runs/wd", "--out", "train"):
    ...  # a second `widedeep train --out runs/wd` now exits 2 at once
```
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from widedeep.safe_output import OutputError, check_writable_dir, no_space_as_error

__all__ = ["LOCK_FILE", "DirectoryBusyError", "directory_lock"]

LOCK_FILE = ".widedeep.lock"
"""The lock file `directory_lock` keeps in a directory while a process works in it."""


class DirectoryBusyError(OutputError):
    """Another process holds the lock of a directory (see `directory_lock`); the message names it."""


def _lock_holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace").split()
    if not text:
        return "pid unknown"
    return f"pid {text[0]}" + (f", widedeep {' '.join(text[1:])}" if len(text) > 1 else "")


@contextlib.contextmanager
def directory_lock(
    path: str | os.PathLike, flag: str, command: str = "", lock_file: str = LOCK_FILE
) -> Iterator[None]:
    """Holds an exclusive lock on directory `path` (created if needed) while the block runs.

    The lock is an `fcntl.flock` on `path/lock_file`: the operating system
    releases it when the holder exits, however it ends, so a killed run never
    blocks the next one. The holder's pid is written in the file for the message
    only. The file is removed when the block ends, and `path` too if this call
    created it and it is left empty (a run that failed before writing anything).

    Args:
        path: the directory.
        flag: the command-line flag naming it, for the messages (e.g. `"--out"`).
        command: what the holder does (e.g. `"train"`), shown to a process refused.
        lock_file: the lock file's name inside `path`.

    Returns:
        A context manager.

    Raises:
        DirectoryBusyError: at once, naming the holder's pid, when another process
            holds the lock.
        OutputError: when `path` is a file or cannot be written.

    Example:

    ```python
    with directory_lock("runs/wd", "--out", "train"):
        ...  # a second `widedeep train --out runs/wd` now exits 2 at once
    ```
    """
    import fcntl  # POSIX

    path = os.fspath(path)
    created = not os.path.lexists(path)
    check_writable_dir(path, flag)
    lock_path = os.path.join(path, lock_file)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise DirectoryBusyError(
                f"{flag} {path} is in use by another process ({holder}): wait for it to end "
                f"or choose another {flag}"
            ) from None
        # The holder removes the file as it releases the lock: a lock taken on a file that
        # is no longer (or no longer the one) at `lock_path` locks nothing; take it again.
        try:
            current = os.stat(lock_path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(fd)):
            break
        os.close(fd)
    try:
        with no_space_as_error(lock_path, 0, flag):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {command}".strip().encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path)  # while still holding the lock (see above)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):  # only when empty
                os.rmdir(path)
