"""Partition parsing and ownership."""

import pytest

from indexer.partition import Partition


def test_parse_and_ownership_split_ids_without_overlap():
    shares = [Partition.parse(f"{index}/3") for index in range(3)]
    for row_id in range(1, 100):
        assert sum(share.owns(row_id) for share in shares) == 1
    assert shares[2].key == "2of3" and str(shares[2]) == "2/3"


def test_whole_catalog_is_the_default():
    whole = Partition()
    assert whole.whole and whole.key == "all" and whole.owns(12345)


@pytest.mark.parametrize("text", ["3/3", "1", "a/2", "-1/2", "0/0", ""])
def test_invalid_partitions_are_refused(text):
    with pytest.raises(ValueError):
        Partition.parse(text)
