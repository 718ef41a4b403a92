"""Built-in plugin ``feedback``: ``chainsight feedback TRACE_ID --up|--down|--rating N``.

The command records user feedback the same way ``observer.feedback(...)``
does (it calls it): Score rows with ``source = "feedback"`` (``thumbs`` +1/-1,
``rating`` 1..5, or a bare ``comment``), stored by the pipeline worker, which
then fires ``feedback_recorded``. The observer it builds loads one built-in
plugin, ``redaction`` (a comment may hold PII or a secret; it is masked
before it is stored), and the entry-point plugins, which may listen to
``feedback_recorded``.

Errors (no verdict, a rating out of range, an unknown trace, an unreachable
store) are reported on stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.commands import (
    CommandError,
    display_url,
    open_store,
    print_json,
    resolve_span,
    resolve_trace,
)
from chainsight.framework.extension import CommandRegistry

COMMAND: Final = "feedback"


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace_id", metavar="TRACE_ID",
                        help="the trace the feedback is about: its id, or a unique end or start "
                        "of it (the short id `chainsight traces` shows)")
    verdict = parser.add_mutually_exclusive_group()
    verdict.add_argument("--up", action="store_true", help="thumbs up")
    verdict.add_argument("--down", action="store_true", help="thumbs down")
    parser.add_argument("--rating", type=int, metavar="N", help="a rating from 1 to 5")
    parser.add_argument("--comment", metavar="TEXT", help="free-text comment")
    parser.add_argument("--span", metavar="SPAN_ID",
                        help="attach to one span of the trace (its id, or a unique end or start of it)")
    parser.add_argument("--user", metavar="USER_ID", help="who gave the feedback")


def _resolve(url: str, trace_text: str, span_text: str | None) -> tuple[str, str | None]:
    """The full trace id (and span id) for what the user typed: an id, or a
    unique end or start of one, as ``chainsight show`` accepts. Raises
    CommandError when none or several match, StoreNotFound when there is no store."""
    with open_store(url) as store:
        trace_id = resolve_trace(store, trace_text)
        span_id = resolve_span(store, trace_id, span_text) if span_text else None
    return trace_id, span_id


def _run(ns: argparse.Namespace) -> int:
    thumbs = 1 if ns.up else -1 if ns.down else None
    if thumbs is None and ns.rating is None and not ns.comment:
        raise CommandError("give --up, --down, --rating N or --comment TEXT")
    if ns.rating is not None and not 1 <= ns.rating <= 5:
        raise CommandError(f"--rating must be from 1 to 5, got {ns.rating}")
    url = ns.db
    # Unknown or ambiguous ids and a missing store are CommandError / StoreMisconfigured:
    # the CLI prints them as one line and exits 1.
    trace_id, span_id = _resolve(url, ns.trace_id, ns.span)

    from chainsight.framework.observer import Observer

    settings = getattr(ns, "settings", None)
    from chainsight.framework.defaults import DEFAULT_PLUGINS

    redaction = tuple(p for p in DEFAULT_PLUGINS if p[0] == "redaction")
    observer = Observer(url, settings=settings, builtins=redaction)
    try:
        scores = observer.feedback(trace_id, thumbs=thumbs, rating=ns.rating, comment=ns.comment,
                                   span_id=span_id, user_id=ns.user)
        flushed = observer.flush(10.0)
        stats = observer.stats()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        observer.shutdown()
    if not flushed or stats.failed or stats.spilled:
        raise CommandError(f"feedback not stored in {display_url(url)} "
                           f"(failed={stats.failed}, spilled={stats.spilled})")
    rows: list[dict[str, Any]] = [
        {"name": s.name, "value": s.value, "label": s.label, "comment": s.comment,
         "trace_id": s.trace_id, "span_id": s.span_id, "score_id": s.score_id}
        for s in scores
    ]
    if getattr(ns, "json", False):
        print_json({"recorded": rows})
    else:
        for s in scores:
            what = {"thumbs": f"thumbs {s.label}", "rating": f"rating {s.value:g}"}.get(s.name, "comment")
            on = f"span {s.span_id} of trace" if s.span_id else "trace"
            print(f"recorded {what} on {on} {s.trace_id}")
    return 0


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    cli.add(COMMAND, "record user feedback on a trace (--up, --down, --rating N, --comment)",
            _configure, _run)
