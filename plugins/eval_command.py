"""Built-in plugin ``eval``: the ``chainsight dataset ...`` and ``chainsight
eval ...`` commands (``chainsight.framework.eval.cli``), imported when the CLI
starts; the runner and the store are imported only when a command runs."""

from __future__ import annotations

from chainsight.framework import hookimpl
from chainsight.framework.extension import CommandRegistry


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    from chainsight.framework.eval.cli import register

    register(cli)
