"""The completion tracker: the resumable position only passes rows whose every predecessor is written."""

from indexer.bulk import bulk_item_ok
from indexer.incremental import missing_ids
from indexer.pipeline import CompletionTracker


def test_checkpoint_waits_for_the_slowest_earlier_row():
    tracker = CompletionTracker()
    for row_id in (1, 2, 3, 4):
        tracker.started(str(row_id), row_id)
    tracker.finished("2", "indexed")
    tracker.finished("3", "download_failed")
    assert tracker.position is None and tracker.prefix_rows == 0
    tracker.finished("1", "indexed")
    assert tracker.position == 3 and tracker.prefix_rows == 3
    assert tracker.prefix_statuses == {"indexed": 2, "download_failed": 1}
    tracker.finished("4", "reused")
    assert tracker.position == 4 and tracker.prefix_statuses["reused"] == 1


def test_missing_ids_merges_two_sorted_streams():
    assert list(missing_ids([1, 2, 5, 7, 9], [1, 3, 5, 6, 9, 10])) == [2, 7]
    assert list(missing_ids([4, 8], [])) == [4, 8]
    assert list(missing_ids([], [1, 2])) == []


def test_deleting_an_absent_document_counts_as_done():
    assert bulk_item_ok(False, {"delete": {"_id": "3", "status": 404, "result": "not_found"}})
    assert not bulk_item_ok(False, {"index": {"_id": "3", "status": 404}})
    assert not bulk_item_ok(False, {"delete": {"_id": "3", "status": 500}})


def test_timed_adds_the_wait_for_each_item_to_the_report_stage():
    import time

    from indexer.pipeline import timed
    from indexer.report import RunReport

    def slow_items():
        for number in range(3):
            time.sleep(0.05)
            yield number

    report = RunReport(mode="full", alias="a")
    assert list(timed(slow_items(), report, "wait_for_rows")) == [0, 1, 2]
    assert 0.14 <= report.stage_seconds["wait_for_rows"] < 5.0
    assert list(timed([], report, "empty")) == [] and report.stage_seconds["empty"] >= 0
