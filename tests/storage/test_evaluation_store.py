"""Datasets (versioned by content) and experiments in the store, on both backends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from chainsight.storage import schema
from chainsight.storage.evaluation import DatasetItem, EvalStore, EvalStoreError, content_version
from chainsight.storage.query import Store

ITEMS = [DatasetItem({"q": "2+2"}, "4", {"topic": "math"}), DatasetItem("capital of France?", "Paris")]


def test_a_dataset_is_versioned_by_its_content(store_url: str) -> None:
    with EvalStore(store_url) as store:
        first, new = store.create_dataset("qa", ITEMS, description="smoke")
        assert new and first.version == content_version(ITEMS) and first.item_count == 2
        again, new = store.create_dataset("qa", list(ITEMS))
        assert not new and again.dataset_id == first.dataset_id
        changed = [*ITEMS, DatasetItem("3*3", 9)]
        second, new = store.create_dataset("qa", changed)
        assert new and second.version != first.version
        assert store.get_dataset("qa").dataset_id == second.dataset_id  # the newest
        assert store.get_dataset(f"qa@{first.version[:6]}").dataset_id == first.dataset_id
        assert [d.version for d in store.list_datasets()] == [second.version, first.version]
        items = store.dataset_items(first.dataset_id)
        assert [(i.input, i.expected, i.metadata, i.position) for i in items] == [
            ({"q": "2+2"}, "4", {"topic": "math"}, 0), ("capital of France?", "Paris", {}, 1)]
        with pytest.raises(EvalStoreError, match="no dataset 'nope'"):
            store.get_dataset("nope")
        with pytest.raises(EvalStoreError, match="no dataset 'qa@ffffffffffff'"):
            store.get_dataset("qa@ffffffffffff")
        with pytest.raises(EvalStoreError, match="invalid dataset name"):
            store.create_dataset("a@b", ITEMS)


def test_experiment_results_in_dataset_order_and_read_by_the_query_api(store_url: str) -> None:
    with EvalStore(store_url) as store:
        dataset, _ = store.create_dataset("qa", ITEMS)
        items = store.dataset_items(dataset.dataset_id)
        exp = store.create_experiment("prompt v2", dataset.dataset_id, {"model": "fake"})
        for item, value in reversed(list(zip(items, (1.0, 0.0), strict=True))):
            store.write_result(exp.experiment_id, item, trace_id=f"t{item.position}", output="x",
                               error=None, latency_ms=1.5, input_tokens=3, output_tokens=4,
                               cost_usd=None, scores={"exact_match": value})
        assert store.finished_items(exp.experiment_id) == {i.item_id for i in items}
        store.finish_experiment(exp.experiment_id, "done", {"items": 2})
        assert store.get_experiment("prompt v2").status == "done"
        assert store.get_experiment(exp.experiment_id[-8:]).summary == {"items": 2}
        with pytest.raises(EvalStoreError, match="no experiment 'other'"):
            store.get_experiment("other")
    with Store(store_url) as reader:
        [listed] = reader.list_experiments()
        assert listed.name == "prompt v2" and listed.metadata == {"model": "fake"}
        results = reader.list_experiment_results(exp.experiment_id)
        assert [(r.trace_id, r.scores) for r in results] == [("t0", {"exact_match": 1.0}),
                                                             ("t1", {"exact_match": 0.0})]


def test_a_name_is_never_taken_for_the_end_of_another_experiments_id(store_url: str) -> None:
    """`--baseline A` picks the run named A, even when another run's id ends
    in "a" (SQLite's LIKE ignores case): this made the end-to-end gate test
    pass a regression about one run in sixteen."""
    with EvalStore(store_url) as store:
        named = store.create_experiment("A", None)
        other = store.create_experiment("B", None)
        with store.engine.begin() as conn:  # give B an id that ends like the name A
            conn.execute(sa.update(schema.experiments)
                         .where(schema.experiments.c.experiment_id == other.experiment_id)
                         .values(experiment_id=other.experiment_id[:-1] + "a"))
        assert store.get_experiment("A").experiment_id == named.experiment_id
        assert store.get_experiment(other.experiment_id[-5:-1] + "a").name == "B"
        with pytest.raises(EvalStoreError, match="no experiment 'ab'"):
            store.get_experiment("ab")  # too short to stand for an id
