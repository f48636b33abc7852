"""Version-dependent behaviour: which settings a new index gets on 8.19 and on 9.x."""

from __future__ import annotations

import logging

import pytest

from imgsearch.esversion import index_settings_for, is_supported, parse_version, warn_if_unsupported


@pytest.mark.parametrize(
    ("text", "version"),
    [("8.19.21", (8, 19, 21)), ("9.5.4", (9, 5, 4)), ("9.2.0-SNAPSHOT", (9, 2, 0)), (" 10.0.1 ", (10, 0, 1))],
)
def test_versions_are_parsed(text, version):
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["", "9", "9.5", "nine.five.four"])
def test_a_malformed_version_is_refused_by_value(text):
    with pytest.raises(ValueError, match="not an Elasticsearch version"):
        parse_version(text)


@pytest.mark.parametrize("version", [(8, 19, 21), (9, 0, 0), (9, 1, 9)])
def test_before_9_2_a_new_index_needs_no_extra_setting(version):
    assert index_settings_for(version) == {}


@pytest.mark.parametrize("version", [(9, 2, 0), (9, 5, 4), (10, 0, 0)])
def test_from_9_2_vectors_stay_in_source(version):
    assert index_settings_for(version) == {"mapping": {"exclude_source_vectors": False}}


def test_only_the_tested_majors_are_supported(caplog):
    assert is_supported((8, 19, 21)) and is_supported((9, 5, 4))
    assert not is_supported((7, 17, 0)) and not is_supported((10, 0, 0))
    with caplog.at_level(logging.WARNING, logger="imgsearch.esversion"):
        warn_if_unsupported("9.5.4")
        assert not caplog.records
        warn_if_unsupported("10.0.0")
    assert "10.0.0 is not a tested major" in caplog.text
