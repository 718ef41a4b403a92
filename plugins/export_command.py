"""Built-in plugin ``export``: ``chainsight export WHAT`` writes Chainsight's
configuration for other tools: ``grafana`` (a dashboard over the metrics of
``chainsight serve``, see ``plugins/grafana.py``) and ``prometheus-rules``
(the alert rules as a Prometheus rule file, see ``plugins/alert_cli.py``),
and the store's traces (``traces``, JSONL or CSV); ``chainsight import FILE``
loads such a JSONL file (``plugins/transfer_command.py``).
One command with a subcommand per format, so each format need not claim the
name ``export`` for itself."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from chainsight.framework import hookimpl
from chainsight.framework.extension import CommandRegistry
from chainsight.plugins import alert_cli, grafana, transfer_command

# format -> (help, add its arguments, run it)
FORMATS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                         Callable[[argparse.Namespace], int]]] = {
    "grafana": ("a Grafana dashboard over the metrics of chainsight serve",
                grafana.configure_export, grafana.run_export),
    "prometheus-rules": ("the alert rules ([plugins.alerts]) as a Prometheus rule file",
                         alert_cli.configure_rules_export, alert_cli.run_rules_export),
    "traces": ("traces with their spans and scores (JSONL, for `chainsight import`), or one CSV "
               "row per trace", transfer_command.configure_export, transfer_command.run_export),
}


def _configure(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    for name, (help_text, configure, _) in FORMATS.items():
        configure(formats.add_parser(name, help=help_text, description=help_text))


def _run(ns: argparse.Namespace) -> int:
    return FORMATS[ns.what][2](ns)


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    cli.add("export", "write traces, or configuration for other tools: " + ", ".join(FORMATS),
            _configure, _run)
    cli.add("import", "load a JSONL export of traces into the store (idempotent)",
            transfer_command.configure_import, transfer_command.run_import)
