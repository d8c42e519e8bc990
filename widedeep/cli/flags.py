"""The flags' value types (`--dropout 0.1`, `--hidden-units 128,64`) and how options are declared.

Each type raises `argparse.ArgumentTypeError`, which `Parser` reports as a `UsageError`: one
line naming the flag, and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
from typing import Any, NoReturn

from widedeep.errors import UsageError


class Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors raise `UsageError` (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def int_at_least(minimum: int, what: str) -> Any:
    """An argparse `type` for integers >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "an integer >= 0")
memory_limit = int_at_least(16, "a number of MiB >= 16")


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def float_at_least(minimum: float, inclusive: bool) -> Any:
    """An argparse `type` for finite numbers `>= minimum` (`> minimum` unless `inclusive`)."""
    what = f"a number {'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_float = float_at_least(0.0, inclusive=False)
non_negative_float = float_at_least(0.0, inclusive=True)


def boolean(text: str) -> bool:
    """An argparse `type` for `true`/`false` (also 1/0, yes/no, on/off); anything else is an error."""
    value = {"1": True, "true": True, "yes": True, "on": True}.get(text.lower())
    if value is None and text.lower() not in ("0", "false", "no", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return bool(value)


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        )
    return values


def weights(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three numbers 'unclick,click,dislike', got {text!r}"
        ) from None
    if len(values) != 3 or any(not (0 <= v < math.inf) for v in values) or not any(values):
        raise argparse.ArgumentTypeError(
            f"expected three non-negative numbers 'unclick,click,dislike', not all 0, got {text!r}"
        )
    return values  # type: ignore[return-value]


def add_model_flags(p: argparse.ArgumentParser) -> None:
    from widedeep.models.dfn import DFN_DEFAULTS
    from widedeep.optimizers import OptimizerConfig

    g = p.add_argument_group("model hyper-parameters")
    g.add_argument("--hidden-units", type=int_list, help="deep MLP widths, e.g. 128,64")
    g.add_argument("--dropout", type=fraction, help="in [0, 1)")
    g.add_argument("--embedding-dim", type=positive_int, help="override every embedding width")
    d = p.add_argument_group("DFN hyper-parameters (--model dfn)")
    for key, default in DFN_DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(default, bool):
            d.add_argument(
                flag,
                type=boolean,
                metavar="{true,false}",
                help=f"default {str(default).lower()}",
            )
        elif isinstance(default, int):
            d.add_argument(flag, type=positive_int, help=f"default {default}")
        elif isinstance(default, float):
            d.add_argument(flag, type=fraction, help=f"default {default}")
        elif isinstance(default, (list, tuple)):
            d.add_argument(flag, type=int_list, help=f"default {','.join(map(str, default))}")
        else:
            d.add_argument(flag, help=f"default {default}")
    o = p.add_argument_group("optimizers")
    defaults = OptimizerConfig()
    for name, what in (
        ("wide_learning_rate", "FTRL learning rate"),
        ("wide_l1", "FTRL L1 strength"),
        ("wide_l2", "FTRL L2 strength"),
        ("wide_initial_accumulator", "FTRL initial accumulator"),
        ("deep_learning_rate", "Adagrad learning rate"),
        ("deep_initial_accumulator", "Adagrad initial accumulator"),
    ):
        flag = "--" + name.replace("_", "-")
        kind = positive_float if name.endswith("learning_rate") else non_negative_float
        o.add_argument(flag, type=kind, help=f"{what} (default {getattr(defaults, name)})")
    p.add_argument(
        "--loss-weights",
        type=weights,
        metavar="U,C,D",
        help="loss weights of unclick,click,dislike impressions (default 1,1,1; the DFN "
        "paper's: 1,1,10)",
    )


def defaults_of(owner: Any) -> dict[str, Any]:
    """The defaults of a dataclass's fields or of a function's keyword arguments."""
    if dataclasses.is_dataclass(owner):
        return {
            f.name: f.default
            for f in dataclasses.fields(owner)
            if f.default is not dataclasses.MISSING
        }
    return {
        name: parameter.default
        for name, parameter in inspect.signature(owner).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def add_option(
    p: argparse.ArgumentParser, defaults: dict[str, Any], name: str, help: str = "", **kwargs: Any
) -> None:
    """`--name`, whose default is `defaults[name]` (its one home), said at the end of its help."""
    default = defaults[name]
    shown = str(default).lower() if isinstance(default, bool) else default
    p.add_argument(
        f"--{name.replace('_', '-')}",
        default=default,
        help=f"{help} (default {shown})" if help else f"default {shown}",
        **kwargs,
    )


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the results as JSON instead")
