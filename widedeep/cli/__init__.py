"""The `widedeep` command line: simulate | prepare | train | evaluate | export | predict | tune.

User mistakes (a missing directory, a malformed schema, a feature the data
lacks, an unknown flag, an output directory another process is writing into)
print one line on stderr and exit with status 2; a full disk prints one line
naming the output and exits with 1; a training run whose loss becomes NaN or
infinite stops there and exits with 3. Any other error is a bug and ends in its
traceback. Set `WIDEDEEP_DEBUG=1` to see the full traceback of every error.

`main` quiets TensorFlow's logs (`native_log.quiet_tensorflow`) before anything imports
TensorFlow, so importing this package imports neither TensorFlow nor the commands' modules'
dependencies: each command imports what it runs.

Modules: `entry_point` (`main`), `parser` (`build_parser`), `flags` (flag value types),
`data_commands` (simulate, prepare), `train_commands` (train, tune), `model_commands`
(evaluate, export, predict), `report` (printed results, exit statuses), `native_log`.
"""

from widedeep.cli.entry_point import main
from widedeep.cli.parser import build_parser
from widedeep.cli.report import EXIT_DIVERGED, EXIT_NO_SPACE, EXIT_USAGE
from widedeep.errors import UsageError

__all__ = ["EXIT_DIVERGED", "EXIT_NO_SPACE", "EXIT_USAGE", "UsageError", "build_parser", "main"]
