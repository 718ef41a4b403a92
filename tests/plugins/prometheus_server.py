"""A real Prometheus server (Debian's ``prometheus`` package) for the tests.

``.ci/run`` installs it where missing; elsewhere a test that needs it skips,
except under CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_prometheus() -> str:
    if not os.access(PROMETHEUS, os.X_OK):
        message = "Debian's prometheus package is not installed (apt-get install prometheus)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message} but CI=true: .ci/run installs it")
        pytest.skip(message)
    return PROMETHEUS


class Prometheus:
    """A Prometheus scraping ``targets`` every second."""

    def __init__(self, tmp: Path, targets: list[str]) -> None:
        binary = need_prometheus()
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: chainsight\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.log = tmp / "prometheus.log"
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
        )
        self.wait(lambda: self._get("/-/ready") is not None, "Prometheus to be ready")

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return bytes(r.read())
        except OSError:
            return None

    def query(self, promql: str) -> dict[str, Any]:
        """The API's answer (``status``, ``data``, ``error``), errors included."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as error:  # 400 for a bad query, with a JSON body
            return dict(json.loads(error.read()))

    def scalar(self, promql: str) -> float | None:
        answer = self.query(promql)
        assert answer["status"] == "success", (promql, answer)
        result = answer["data"]["result"]
        if not result:
            return None
        assert len(result) == 1, (promql, result)
        return float(result[0]["value"][1])

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"waited {timeout} s for {what}; prometheus log:\n{tail}")
            time.sleep(0.2)

    def wait_for(self, promql: str, expected: float, timeout: float = 30.0) -> None:
        last: list[float | None] = [None]

        def equal() -> bool:
            last[0] = self.scalar(promql)
            return last[0] is not None and abs(last[0] - expected) <= 1e-9 * max(1.0, abs(expected))

        try:
            self.wait(equal, f"{promql} == {expected}", timeout)
        except AssertionError as error:
            raise AssertionError(f"{promql}: last answer {last[0]}, expected {expected}\n{error}") from None

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
