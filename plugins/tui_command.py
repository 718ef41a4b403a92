"""Built-in plugin 'tui_command': ``chainsight tui [--db URL]`` opens the terminal UI.

Textual is imported only when the command runs, so the CLI (and ``framework``)
stays light.
"""

from __future__ import annotations

import argparse
import os

from chainsight.framework import hookimpl
from chainsight.framework.commands import CommandError, open_store
from chainsight.framework.extension import CommandRegistry


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--live", action="store_true", help="start with live tail on")


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "json", False):
        raise CommandError("`chainsight tui` is interactive and has no --json output; "
                           "for JSON use `chainsight traces --json` or `chainsight show TRACE_ID --json`",
                           exit_status=2)
    try:
        from chainsight.tui.app import ChainsightApp
    except ImportError as error:  # Textual is an optional dependency
        raise CommandError(f"chainsight tui needs Textual: pip install 'chainsight[tui]' ({error})",
                           exit_status=2) from None
    # The configuration `chainsight --config FILE` read: replays (`p`) record with it.
    settings = getattr(args, "settings", None)
    url = getattr(args, "db", None)
    if not url:
        from chainsight.framework.config import load_settings

        url = (settings or load_settings()).storage_url
    # A reader: no store at the URL is an error (StoreNotFound, printed by the
    # CLI as one line), never a new empty store.
    open_store(url).close()
    # For tests and dry runs: replays answer this text without calling a model.
    mock = os.environ.get("CHAINSIGHT_REPLAY_MOCK_RESPONSE") or None
    ChainsightApp(url, live=bool(getattr(args, "live", False)), replay_mock_response=mock,
                  settings=settings).run()
    return 0


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    cli.add("tui", "Browse traces, metrics and alerts in the terminal", _configure, _run)
