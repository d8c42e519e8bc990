"""The base class of the errors widedeep reports about its user's input.

A `WidedeepError` says what the user can fix: a flag, an argument, a file, a dataset, an output
directory. The `widedeep` command prints its message as one line and exits with status 2; any
other exception is a bug and ends in a traceback. The subclasses live beside the code that
raises them (`widedeep.schema.SchemaError`, `widedeep.data.dataset_format.DatasetError`,
`widedeep.safe_output.OutputError`, ...); most are also `ValueError`s, as Keras' argument checks are.

A check that only a programming mistake can fail (an internal invariant) raises a plain
`ValueError` or `TypeError` instead.

Example:

```python
from widedeep.training import train

try:
    train(config)
except widedeep.WidedeepError as e:  # a bad dataset directory, an --out in use, ...
    print(f"cannot train: {e}")
```
"""

from __future__ import annotations

__all__ = ["ModelFileError", "UsageError", "WidedeepError"]


class WidedeepError(Exception):
    """A mistake in widedeep's input that its user can fix; the message says what and where."""


class UsageError(WidedeepError, ValueError):
    """A flag, an argument or an environment setting widedeep cannot use (`--out x.txt`, ...)."""


class ModelFileError(WidedeepError, ValueError):
    """A model file that Keras cannot load; the message is Keras' own."""
