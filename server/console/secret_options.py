"""Options someone might hand a secret with (`--password hunter2`): refused, never echoed.

A secret on the command line is seen by every user in the process list and stays in the
shell's history. argparse would answer an unknown `--password VALUE` with "unrecognized
arguments: --password VALUE", printing the secret; these options are known instead, and their
action refuses with what to do, without the value.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

SECRET_OPTIONS = ("--password", "--passphrase", "--secret", "--key", "--private-key")


def refuse_secret_options(parser: argparse._ActionsContainer, instead: str) -> None:
    """Make each of SECRET_OPTIONS a refusal that says `instead` (what to do)."""
    refusal = (
        "a secret is never given on the command line (other users see it in the process list "
        f"and it stays in the shell's history): {instead}"
    )

    class Refuse(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
            parser.error(refusal)

    for option in SECRET_OPTIONS:
        parser.add_argument(option, nargs="?", action=Refuse, help=argparse.SUPPRESS)
