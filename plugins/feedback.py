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
import json
import sys
from typing import Any, Final

from framework import hookimpl
from framework.extension import CommandRegistry

COMMAND: Final = "feedback"


class FeedbackError(Exception):
    """Bad input for ``chainsight feedback``."""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace_id", metavar="TRACE_ID", help="the trace the feedback is about")
    verdict = parser.add_mutually_exclusive_group()
    verdict.add_argument("--up", action="store_true", help="thumbs up")
    verdict.add_argument("--down", action="store_true", help="thumbs down")
    parser.add_argument("--rating", type=int, metavar="N", help="a rating from 1 to 5")
    parser.add_argument("--comment", metavar="TEXT", help="free-text comment")
    parser.add_argument("--span", metavar="SPAN_ID", help="attach to one span of the trace")
    parser.add_argument("--user", metavar="USER_ID", help="who gave the feedback")


def _error(message: str) -> int:
    sys.stderr.write(f"chainsight: error: {message}\n")
    return 1


def _resolve_trace(url: str, trace_id: str) -> str:
    """The full trace id (a unique end or start is accepted, as in ``chainsight show``)."""
    from storage.query import Store

    with Store(url) as store:
        if store.get_trace(trace_id) is not None:
            return trace_id
        matches = store.resolve_trace_id(trace_id)
    if not matches:
        raise FeedbackError(f"no trace {trace_id!r} in {url}")
    if len(matches) > 1:
        raise FeedbackError(f"trace id prefix {trace_id!r} is ambiguous: {', '.join(matches)}")
    return str(matches[0])


def _run(ns: argparse.Namespace) -> int:
    thumbs = 1 if ns.up else -1 if ns.down else None
    if thumbs is None and ns.rating is None and not ns.comment:
        return _error("give --up, --down, --rating N or --comment TEXT")
    if ns.rating is not None and not 1 <= ns.rating <= 5:
        return _error(f"--rating must be from 1 to 5, got {ns.rating}")
    url = ns.db
    try:
        trace_id = _resolve_trace(url, ns.trace_id)
    except FeedbackError as exc:
        return _error(str(exc))
    except Exception as exc:
        return _error(f"cannot read the store {url}: {type(exc).__name__}: {exc}")

    from framework.observer import Observer

    settings = getattr(ns, "settings", None)
    from framework.defaults import DEFAULT_PLUGINS

    redaction = tuple(p for p in DEFAULT_PLUGINS if p[0] == "redaction")
    observer = Observer(url, settings=settings, builtins=redaction)
    try:
        scores = observer.feedback(trace_id, thumbs=thumbs, rating=ns.rating, comment=ns.comment,
                                   span_id=ns.span, user_id=ns.user)
        flushed = observer.flush(10.0)
        stats = observer.stats()
    except ValueError as exc:
        return _error(str(exc))
    finally:
        observer.shutdown()
    if not flushed or stats.failed or stats.spilled:
        return _error(f"feedback not stored in {url} (failed={stats.failed}, spilled={stats.spilled})")
    rows: list[dict[str, Any]] = [
        {"name": s.name, "value": s.value, "label": s.label, "comment": s.comment,
         "trace_id": s.trace_id, "span_id": s.span_id, "score_id": s.score_id}
        for s in scores
    ]
    if getattr(ns, "json", False):
        print(json.dumps({"recorded": rows}))
    else:
        for s in scores:
            what = {"thumbs": f"thumbs {s.label}", "rating": f"rating {s.value:g}"}.get(s.name, "comment")
            print(f"recorded {what} on trace {s.trace_id}")
    return 0


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    cli.add(COMMAND, "record user feedback on a trace (--up, --down, --rating N, --comment)",
            _configure, _run)
