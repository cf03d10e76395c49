"""`trustlog completion`: a shell completion script generated from the parser.

The parser is built in ``cli/main.py``, which imports this module to register the
command, so main hands its ``build_parser`` in at registration rather than this module
importing main (the way back would be an import cycle).
"""
from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

from .ui import UI


def cmd_completion(args: argparse.Namespace, ui: UI, *,
                   build_parser: Callable[[], argparse.ArgumentParser]) -> int:
    import shtab

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return 0


def register(sub: Any, common: argparse.ArgumentParser, *,
             build_parser: Callable[[], argparse.ArgumentParser]) -> None:
    """Add ``trustlog completion SHELL``; ``build_parser`` makes the whole parser."""
    c = sub.add_parser("completion", help="print a shell completion script",
                       description="Print a completion script generated from the parser, e.g. "
                                   "`trustlog completion bash > /etc/bash_completion.d/trustlog` or "
                                   "`trustlog completion zsh > ~/.zfunc/_trustlog`.")
    c.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete for")
    c.set_defaults(func=functools.partial(cmd_completion, build_parser=build_parser))
