"""Importing the framework (and the pricing plugin) never imports litellm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_OFFLINE_MODE="true",
               LITELLM_MODE="PRODUCTION", HF_HUB_OFFLINE="1", LANGSMITH_TRACING="false")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_import_chainsight_does_not_import_litellm() -> None:
    out = _run("import chainsight; import sys; assert 'litellm' not in sys.modules; print('ok')")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_pricing_prices_without_importing_litellm() -> None:
    code = (
        "import sys\n"
        "import chainsight.plugins.pricing as p\n"
        "from chainsight.framework.model import Span\n"
        "s = Span('x', 'llm'); s.model = 'gpt-4o'; s.input_tokens = 1000; s.output_tokens = 100\n"
        "print(p.PricingPlugin().price(s))\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) == 1000 * 2.5e-6 + 100 * 10e-6


def test_lazy_attribute_loads_the_adapter() -> None:
    out = _run(
        "import sys, chainsight\n"
        "cb = chainsight.LitellmCallback\n"
        "from litellm.integrations.custom_logger import CustomLogger\n"
        "assert issubclass(cb, CustomLogger)\n"
        "assert 'litellm' in sys.modules\n"
        "print('ok')\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
