"""The command line: `gazeheads discover | steer | track | eval | presence | monitor | demo | run | verify | reproduce |
data | train-tiny`.

One module per command (``register(sub)`` adds its parser, ``run(args)`` does the work) and
:mod:`gazeheads.cli.options` for what they share. Nothing heavy is imported until a command
runs, so `gazeheads --help` answers at once. Errors from bad input print the problem and the
fix, not a traceback; dependency warnings and loading bars appear only with --verbose.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from . import (data, demo, discover, evaluate, monitor, options, presence, reproduce, run, steer, track, train_tiny,
               verify)

COMMANDS = (discover, steer, track, evaluate, presence, monitor, demo, run, verify, reproduce, data, train_tiny)


class Parser(argparse.ArgumentParser):
    """argparse with gazeheads' error style: the problem, then the fix, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message}\nfix: see `{self.prog} --help` for the accepted options and values\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gazeheads", description="Discover, steer and track the gaze heads of vision-language models.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"gazeheads {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show dependencies' warnings, loading bars and logs (hidden by default)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def quiet_dependencies(verbose: bool) -> None:
    """Hide transformers' and huggingface_hub's warnings and progress bars unless `verbose`;
    print gazeheads' own warnings as one plain line."""
    from ..errors import GazeheadsWarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {message}", file=sys.stderr)

    original = warnings.showwarning

    def route(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, GazeheadsWarning):
            show(message, category, filename, lineno)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = route
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for module in ("transformers", "huggingface_hub"):  # already imported (e.g. in a notebook): tell them too
        if module in sys.modules:
            _quiet_loaded(module)
    for module in ("transformers", "torch", "huggingface_hub", "accelerate", "datasets", "torchvision"):
        warnings.filterwarnings("ignore", module=module)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _quiet_loaded(module: str) -> None:
    if module == "transformers":
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
    else:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "train-tiny" in argv:  # every option after it belongs to the trainer
        i = argv.index("train-tiny")
        if all(a == "--verbose" for a in argv[:i]):
            quiet_dependencies("--verbose" in argv[:i])
            return _guarded(lambda: train_tiny.run(argv[i + 1:]))
    args = build_parser().parse_args(options.join_negative_values(argv))
    quiet_dependencies(args.verbose)
    return _guarded(lambda: args.run(args))


def _guarded(work) -> int:
    from ..errors import GazeheadsError

    try:
        return work()
    except GazeheadsError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
