"""`main`, the `widedeep` command: quiets TensorFlow, runs a subcommand, maps errors to statuses."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from widedeep.cli.native_log import debug_enabled, quiet_tensorflow
from widedeep.cli.report import EXIT_NO_SPACE, EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `widedeep ARGS` (`argv`, by default `sys.argv[1:]`) and returns its exit status.

    A `widedeep.WidedeepError` (a mistake in the flags or the inputs) or a missing file is
    printed as one line, status 2; any other exception is a bug and propagates with its
    traceback. `WIDEDEEP_DEBUG=1` shows the traceback of every error.
    """
    quiet_tensorflow()  # before anything below imports TensorFlow
    import tensorflow as tf

    from widedeep.cli.parser import build_parser
    from widedeep.errors import WidedeepError
    from widedeep.safe_output import NoSpaceError, is_out_of_space

    debug = debug_enabled()
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except NoSpaceError as e:
        if debug:
            raise
        print(f"widedeep: error: {e}", file=sys.stderr)
        return EXIT_NO_SPACE
    except (WidedeepError, FileNotFoundError) as e:
        if debug:
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"widedeep: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except tf.errors.DataLossError as e:
        if debug:
            raise
        message = str(e).strip().splitlines()[0]
        print(
            f"widedeep: error: damaged dataset shard (checksum mismatch): {message}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        print(f"widedeep: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:
        if debug or not is_out_of_space(e):
            raise
        # A write that no `NoSpaceError` names (TensorBoard's event files, Keras internals);
        # TensorFlow's messages read "<file>; No space left on device".
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        where = getattr(e, "filename", None) or (text.split("; ")[0] if "; " in text else "")
        where = where or "an output"
        print(
            f"widedeep: error: no space left on device while writing {where}; free space or "
            "choose another --out",
            file=sys.stderr,
        )
        return EXIT_NO_SPACE
    return 0
