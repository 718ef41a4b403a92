"""Built-in plugin ``groundedness``: is the answer supported by what was retrieved?

A trace-level check (``check_trace``, run once the root span ended).

* **Answer**: the root span's output text; when the root has none, the output
  of the last llm span (by end time).
* **Documents**: the outputs of every retriever span in the trace (LangChain
  documents, ``{"page_content": ...}`` dicts, strings, lists of them).
* Traces with no retriever span, no documents or no answer are skipped.

The lexical scorer splits the answer into sentences and, per sentence, takes
its content words (lower-cased, stopwords dropped, light stemming) and the
share of them found in the documents. A sentence is *supported* when that
share reaches ``min_support`` and every number it states appears in the
documents ("founded in 1998" is not supported by "founded in 1989").
Sentences with fewer than ``min_words`` content words ("Sure!", "Hope this
helps.") are not judged. One Score on the root span:

* ``name`` ``"groundedness"``, ``source`` ``"check"``;
* ``value`` the fraction of judged sentences that are supported, 0..1;
* ``label`` ``"grounded"`` or ``"ungrounded"``; ``passed`` ``value >= threshold``;
* ``comment`` the count and the unsupported sentences, quoted (already
  redacted: redaction ran in ``process_span``). Quotes are left out when
  ``quote_unsupported = false`` or the pipeline runs in metrics-only mode.

LLM-as-judge (``mode = "judge"`` or ``"both"``): the answer and documents go to
``judge_model`` through litellm (imported lazily, on a small thread pool off
the pipeline worker, since a model call exceeds any check budget); its verdict
is recorded later with ``observer.record_score`` as ``groundedness`` with
``source = "judge"``. ``judge_options`` are passed to ``litellm.completion``
(``api_base``, ``temperature``; tests pass ``mock_response``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.model import Score, Span
from chainsight.plugins.text import all_text, answer_text

log = logging.getLogger("chainsight.plugins.groundedness")

NAME: Final = "groundedness"
MAX_QUOTE: Final = 200
MAX_COMMENT: Final = 2000

_STOPWORDS_TEXT: Final = (
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves yes may might must
    shall us one two many much via per e g ie eg etc however therefore thus according based
    sure hope helps help"""
)
STOPWORDS: Final = frozenset(_STOPWORDS_TEXT.split())
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "threshold": {
            "type": "number", "minimum": 0, "maximum": 1, "default": 0.8,
            "description": "The trace passes when this fraction of its sentences is supported.",
        },
        "min_support": {
            "type": "number", "minimum": 0, "maximum": 1, "default": 0.6,
            "description": "Share of a sentence's content words found in the documents for it to count as supported.",
        },
        "min_words": {
            "type": "integer", "minimum": 1, "default": 3,
            "description": "Sentences with fewer content words are not judged.",
        },
        "quote_unsupported": {
            "type": "boolean", "default": True,
            "description": "Quote unsupported sentences in the comment (never in metrics-only mode).",
        },
        "mode": {
            "enum": ["lexical", "judge", "both"], "default": "lexical",
            "description": "lexical (offline), judge (an LLM through litellm), or both.",
        },
        "judge_model": {"type": "string", "default": "gpt-4o-mini", "description": "litellm model name of the judge."},
        "judge_options": {
            "type": "object", "default": {},
            "description": "Extra keyword arguments for litellm.completion (api_base, temperature...).",
        },
        "judge_timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 30},
        "judge_max_pending": {
            "type": "integer", "minimum": 1, "default": 100,
            "description": "Judge calls waiting at most; traces beyond are not judged (logged).",
        },
    },
}


def _stem(word: str) -> str:
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and not w.isdigit()]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


@dataclass(frozen=True, slots=True)
class Verdict:
    judged: int
    supported: int
    unsupported: tuple[str, ...]

    @property
    def fraction(self) -> float:
        return self.supported / self.judged if self.judged else 1.0


def lexical_verdict(answer: str, documents: str, min_support: float = 0.6, min_words: int = 3) -> Verdict:
    """Per-sentence lexical support of ``answer`` by ``documents``."""
    vocabulary = set(content_words(documents))
    numbers = {_norm_number(n) for n in _NUMBER.findall(documents)}
    judged = supported = 0
    unsupported: list[str] = []
    for sentence in split_sentences(answer):
        words = content_words(sentence)
        if len(words) < min_words:
            continue
        judged += 1
        share = sum(w in vocabulary for w in words) / len(words)
        stated = {_norm_number(n) for n in _NUMBER.findall(sentence)}
        if share >= min_support and stated <= numbers:
            supported += 1
        else:
            unsupported.append(sentence)
    return Verdict(judged, supported, tuple(unsupported))


def _norm_number(text: str) -> str:
    return text.replace(",", "")


def answer_of(root: Span, spans: Sequence[Span]) -> str:
    text = answer_text(root.outputs).strip()
    if text:
        return text
    llm = [s for s in spans if s.kind == "llm" and s.outputs is not None]
    llm.sort(key=lambda s: s.end_ns or 0)
    for span in reversed(llm):
        text = answer_text(span.outputs).strip()
        if text:
            return text
    return ""


def documents_of(spans: Sequence[Span]) -> list[str]:
    docs: list[str] = []
    for span in spans:
        if span.kind == "retriever" and span.outputs is not None:
            text = all_text(span.outputs).strip()
            if text:
                docs.append(text)
    return docs


JUDGE_PROMPT: Final = (
    "You check whether an answer is supported by the given documents. Reply with JSON only: "
    '{"score": <fraction of the answer\'s claims supported, 0..1>, '
    '"unsupported": [<claims not supported by the documents>]}.'
)


class GroundednessCheck:
    name = NAME

    def __init__(self, config: Mapping[str, Any] | None = None, observer: Any = None) -> None:
        config = dict(config or {})
        self.threshold = float(config.get("threshold", 0.8))
        self.min_support = float(config.get("min_support", 0.6))
        self.min_words = int(config.get("min_words", 3))
        self.quote = bool(config.get("quote_unsupported", True))
        self.mode = str(config.get("mode", "lexical"))
        self.judge_model = str(config.get("judge_model", "gpt-4o-mini"))
        self.judge_options = dict(config.get("judge_options") or {})
        self.judge_timeout_s = float(config.get("judge_timeout_s", 30))
        self.judge_max_pending = int(config.get("judge_max_pending", 100))
        self.observer = observer
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def _metrics_only(self) -> bool:
        # The pipeline is built after plugins are configured: look it up per call.
        options = getattr(getattr(self.observer, "pipeline", None), "options", None)
        return bool(getattr(options, "metrics_only", False))

    def check_trace(self, root: Span, spans: Sequence[Span]) -> list[Score] | None:
        docs = documents_of(spans)
        if not docs:
            return None
        answer = answer_of(root, spans)
        if not answer:
            return None
        if self.mode in ("judge", "both"):
            self._submit_judge(root, answer, docs)
        if self.mode == "judge":
            return None
        verdict = lexical_verdict(answer, "\n".join(docs), self.min_support, self.min_words)
        if not verdict.judged:
            return None
        value = round(verdict.fraction, 4)
        passed = value >= self.threshold
        comment = f"{verdict.supported}/{verdict.judged} sentences supported by {len(docs)} retrieved document set(s)"
        if verdict.unsupported:
            if self.quote and not self._metrics_only():
                quotes = "; ".join(f'"{_clip(s)}"' for s in verdict.unsupported)
                comment = _clip(f"{comment}; unsupported: {quotes}", MAX_COMMENT)
            else:
                comment += f"; {len(verdict.unsupported)} unsupported"
        return [Score(NAME, "check", root.trace_id, root.span_id, value,
                      "grounded" if passed else "ungrounded", passed, comment)]

    # ---- LLM-as-judge ------------------------------------------------------
    def _submit_judge(self, root: Span, answer: str, docs: list[str]) -> None:
        with self._lock:
            self._pending = {f for f in self._pending if not f.done()}
            if len(self._pending) >= self.judge_max_pending:
                log.warning("groundedness judge backlog full; trace %s not judged", root.trace_id)
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chainsight-judge")
            future = self._executor.submit(self._judge_and_record, root.trace_id, root.span_id, answer, docs)
            self._pending.add(future)

    def _judge_and_record(self, trace_id: str, span_id: str, answer: str, docs: list[str]) -> None:
        try:
            score = self.judge(trace_id, span_id, answer, docs)
        except Exception as exc:
            log.warning("groundedness judge failed for trace %s: %s: %s", trace_id, type(exc).__name__, exc)
            return
        if self.observer is not None:
            self.observer.record_score(score)

    def judge(self, trace_id: str, span_id: str | None, answer: str, docs: list[str]) -> Score:
        """Ask the judge model (blocking). Raises on a call or parse failure."""
        import litellm

        litellm.suppress_debug_info = True
        documents = "\n\n".join(f"[{i + 1}] {d}" for i, d in enumerate(docs))
        response = litellm.completion(
            model=self.judge_model,
            messages=[
                {"role": "system", "content": JUDGE_PROMPT},
                {"role": "user", "content": f"Documents:\n{documents}\n\nAnswer:\n{answer}"},
            ],
            timeout=self.judge_timeout_s,
            **self.judge_options,
        )
        text = answer_text(response)
        verdict = parse_judge_reply(text)
        value = min(max(float(verdict["score"]), 0.0), 1.0)
        passed = value >= self.threshold
        unsupported = [str(u) for u in verdict.get("unsupported") or []]
        comment = f"judge {self.judge_model}: {value:.2f}"
        if unsupported:
            if self.quote and not self._metrics_only():
                comment = _clip(comment + "; unsupported: " + "; ".join(f'"{_clip(u)}"' for u in unsupported), MAX_COMMENT)
            else:
                comment += f"; {len(unsupported)} unsupported"
        return Score(NAME, "judge", trace_id, span_id, value,
                     "grounded" if passed else "ungrounded", passed, comment)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for judge calls in flight (tests, shutdown); True when none is left."""
        with self._lock:
            pending = set(self._pending)
        if not pending:
            return True
        _done, not_done = wait_futures(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


def parse_judge_reply(text: str) -> dict[str, Any]:
    """The judge's JSON object (fenced or surrounded by prose is fine)."""
    candidates = [text.strip()] + [m.group(0) for m in _JSON_OBJECT.finditer(text)]
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("score"), int | float):
            return data
    raise ValueError("judge reply has no JSON object with a numeric 'score'")


def _clip(text: str, limit: int = MAX_QUOTE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GroundednessPlugin:
    """One per observer (see ``create_plugin``): its own settings, judge pool
    and observer to record judge verdicts with."""

    CONFIG_SCHEMA: Final = CONFIG_SCHEMA

    def __init__(self) -> None:
        self.check = GroundednessCheck()

    @hookimpl
    def configure(self, observer: Any, config: Mapping[str, Any]) -> None:
        self.check.close()
        self.check = GroundednessCheck(config, observer)

    @hookimpl
    def trace_finished(self, root: Span, spans: Sequence[Span]) -> list[Score] | None:
        return self.check.check_trace(root, spans)

    @hookimpl
    def shutdown(self) -> None:
        self.check.close()


def create_plugin() -> GroundednessPlugin:
    return GroundednessPlugin()
