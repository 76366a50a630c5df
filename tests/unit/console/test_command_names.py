"""Every console RPC has the `sonde` command that calls it, and that command exists.

The refusals the real server words for each method are rendered through the CLI in
tests/e2e/test_refusal_names.py.
"""

from __future__ import annotations

import argparse
import inspect

import pytest

from sonde.server.console.cli import build_parser
from sonde.server.console.command_names import COMMAND_OF_RPC, with_command_names
from sonde.v1 import console_pb2

CONSOLE = console_pb2.DESCRIPTOR.services_by_name["ConsoleService"]
METHODS = sorted(method.name for method in CONSOLE.methods)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser of `command` ("sonde agents revoke"), walking the CLI's subcommands."""
    words = command.split()
    assert words[0] == "sonde", command
    parser = build_parser()
    for depth, word in enumerate(words[1:], start=1):
        known = subcommands(parser)
        assert word in known, f"`{' '.join(words[:depth])}` has no `{word}`: {sorted(known)}"
        parser = known[word]
    return parser


def test_every_console_method_has_a_command_name_and_nothing_else_does() -> None:
    missing = [name for name in METHODS if name not in COMMAND_OF_RPC]
    assert not missing, f"add these to COMMAND_OF_RPC in server/console/command_names.py: {missing}"
    assert sorted(COMMAND_OF_RPC) == METHODS, "COMMAND_OF_RPC names methods the service lacks"


@pytest.mark.parametrize("rpc", METHODS)
def test_the_command_named_exists_and_calls_its_rpc(rpc: str) -> None:
    parser = command_parser(COMMAND_OF_RPC[rpc])
    handler = parser.get_default("handler")
    assert handler is not None, f"`{COMMAND_OF_RPC[rpc]}` does nothing by itself"
    module = inspect.getmodule(handler)
    assert module is not None
    assert f"stub.{rpc}" in inspect.getsource(module), (rpc, module.__name__)


@pytest.mark.parametrize("rpc", METHODS)
def test_a_message_naming_the_rpc_names_the_command(rpc: str) -> None:
    said = with_command_names(f"{rpc} needs the x.y permission (admin); bob is l1")
    assert said == f"`{COMMAND_OF_RPC[rpc]}` needs the x.y permission (admin); bob is l1"
    assert not any(name in said.replace(COMMAND_OF_RPC[rpc], "") for name in METHODS), said


def test_words_that_only_contain_an_rpc_name_are_left_alone() -> None:
    # "Logout" inside "Logouts" or a host name is not the RPC.
    assert with_command_names("Logouts of PC-WhoAmI2") == "Logouts of PC-WhoAmI2"
