"""What every command handler gets: its output and a lazily opened console connection."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from sonde.server.console.client import ConsoleClient
from sonde.server.console.config import config_path, load_credentials
from sonde.server.console.output import Output


class Context:
    """One CLI invocation: the environment it reads, where it writes, and its connection."""

    def __init__(self, out: Output, env: Mapping[str, str] | None = None) -> None:
        self.out = out
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._client: ConsoleClient | None = None

    @property
    def config_path(self) -> Path:
        return config_path(self.env)

    def client(self) -> ConsoleClient:
        """The connection from saved config and environment (opened on first use)."""
        if self._client is None:
            self._client = ConsoleClient(load_credentials(self.env, self.config_path))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


Handler = Callable[[argparse.Namespace, Context], int]
