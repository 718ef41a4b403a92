"""Build ``plugins/price_snapshot.json`` from the installed litellm's price map.

Chainsight ships this snapshot so that calls are priced without the
``litellm`` extra (see ``plugins/price_table.py``). It keeps, of litellm's
``model_prices_and_context_window_backup.json``, only the models priced by
the token (modes chat, completion and responses, with a non-zero input or
output price) and only the fields pricing reads, one model per line so that
a refresh reads well in a diff. Its first entry says when it was built and
from which litellm release.

Run it after upgrading litellm (offline; litellm is not imported)::

    .venv/bin/python scripts/build_price_snapshot.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chainsight.plugins.price_table import (  # noqa: E402
    PRICE_FIELDS,
    SNAPSHOT_FILE,
    SNAPSHOT_KEY,
    bundled_table_path,
    litellm_version,
)

MODES = ("chat", "completion", "responses")


def snapshot_entries(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The token-priced chat/completion models of a litellm map, pricing fields only."""
    entries: dict[str, dict[str, float]] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        kept = {f: entry[f] for f in PRICE_FIELDS
                if isinstance(entry.get(f), int | float) and not isinstance(entry.get(f), bool)}
        if kept.get("input_cost_per_token") or kept.get("output_cost_per_token"):
            entries[key] = kept
    return entries


def render(meta: dict[str, Any], entries: dict[str, dict[str, float]]) -> str:
    lines = [f"{json.dumps(SNAPSHOT_KEY)}: {json.dumps(meta, sort_keys=True)}"]
    lines += [f"{json.dumps(key)}: {json.dumps(entries[key], sort_keys=True)}"
              for key in sorted(entries)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=None,
                        help="a price map in litellm's format (default: the installed litellm's)")
    parser.add_argument("--litellm-version", default=None,
                        help="the litellm release the map comes from (default: the installed one)")
    parser.add_argument("--out", type=Path, default=SNAPSHOT_FILE, help="where to write it")
    args = parser.parse_args(argv)

    source = args.source or bundled_table_path()
    version = args.litellm_version or litellm_version()
    if source is None or version is None:
        parser.error("litellm is not installed: give --source PATH and --litellm-version X.Y.Z")
    data = json.loads(Path(source).read_text(encoding="utf-8"))
    entries = snapshot_entries(data)
    meta = {
        "built": dt.date.today().isoformat(),
        "litellm_version": version,
        "source": "litellm/model_prices_and_context_window_backup.json",
        "models": len(entries),
        "fields": list(PRICE_FIELDS),
    }
    args.out.write_text(render(meta, entries), encoding="utf-8")
    print(f"wrote {args.out}: {len(entries)} models from litellm {version}, "
          f"{args.out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
