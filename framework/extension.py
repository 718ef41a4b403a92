"""What the ``register_commands`` hook receives: a way to add ``chainsight``
subcommands. A structural Protocol: the CLI's own registry implements it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Protocol

CommandRunner = Callable[[argparse.Namespace], int]


class CommandRegistry(Protocol):
    """What ``register_commands`` receives: a way to add ``chainsight`` subcommands."""

    def add(
        self,
        name: str,
        help: str,
        configure: Callable[[argparse.ArgumentParser], None],
        run: CommandRunner,
    ) -> None:
        """Add ``chainsight NAME``. ``configure`` adds its arguments (``--db``
        and ``--json`` are added by the host); ``run`` gets the parsed
        namespace and returns the exit status."""
        ...

