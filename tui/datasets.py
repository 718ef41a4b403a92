"""Add a trace to a dataset from the TUI: its root's inputs and outputs become
an item's input and expected output, in a new version of the dataset (the
newest version's items plus this one), or a new dataset of one item."""

from __future__ import annotations

from typing import Any

from chainsight.storage.evaluation import DatasetItem, EvalStore, EvalStoreError


def add_trace(url: str, detail: Any, name: str) -> tuple[str, int, bool]:
    """(NAME@VERSION, item count, whether the trace was new to the dataset)."""
    root = next((s for s in detail.spans if s.parent_id is None), None)
    if root is None:
        raise ValueError("the trace has no root span")
    item = DatasetItem(root.inputs, root.outputs, {"trace_id": detail.trace.trace_id,
                                                   "trace_name": detail.trace.name})
    with EvalStore(url) as store:
        try:
            current = store.get_dataset(name)
        except EvalStoreError:
            items: list[DatasetItem] = []
        else:
            items = store.dataset_items(current.dataset_id)
        if any(i.metadata.get("trace_id") == detail.trace.trace_id for i in items):
            return current.label, len(items), False
        items = [DatasetItem(i.input, i.expected, i.metadata) for i in items] + [item]
        dataset, _ = store.create_dataset(name, items)
    return dataset.label, dataset.item_count, True
