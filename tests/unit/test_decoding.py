"""Decoding in worker processes gives the thread's pixels and failures; a dying worker fails one row."""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from imgsearch.errors import RowFailure, RowStatus
from imgsearch.imaging import decode_image
from indexer.decoding import Decoder, auto_decode_processes, usable_cores
from tests.unit.test_imaging import encode, gradient

CRASH = b"kill the worker"


def decode_or_die(data: bytes, max_pixels: int) -> np.ndarray:
    """decode_image, except that one input kills the process decoding it, as a codec crash would."""
    if data == CRASH:
        os._exit(70)
    return decode_image(data, max_pixels)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [encode(gradient(size=(200 + n * 10, 150)), fmt) for n, fmt in enumerate(["JPEG", "PNG"] * 3)]


def test_a_row_failure_survives_pickling_with_its_fields():
    failure = pickle.loads(pickle.dumps(RowFailure(RowStatus.DECODE_FAILED, "not_an_image", "no")))
    assert (failure.status, failure.reason) == (RowStatus.DECODE_FAILED, "not_an_image")
    assert failure.message == "no"


def test_processes_give_the_same_pixels_and_failures_as_the_calling_thread(images):
    inline, pool = Decoder(0), Decoder(2)
    try:
        for data in images:
            assert np.array_equal(pool(data, 10_000_000), inline(data, 10_000_000))
        for data, cap in ((b"not an image", 10_000_000), (images[0], 100)):
            with pytest.raises(RowFailure) as in_thread:
                inline(data, cap)
            with pytest.raises(RowFailure) as in_process:
                pool(data, cap)
            assert str(in_process.value) == str(in_thread.value)
            assert in_process.value.reason == in_thread.value.reason
    finally:
        pool.close()


def test_an_image_that_kills_its_worker_fails_alone_and_the_pool_recovers(images):
    decoder = Decoder(2, decode=decode_or_die)
    work = [*images[:3], CRASH, *images[3:]]
    try:
        with ThreadPoolExecutor(len(work)) as threads:
            outcomes = list(threads.map(lambda data: outcome(decoder, data), work))
        assert outcomes[3] == "decoder_crashed"
        assert [o for n, o in enumerate(outcomes) if n != 3] == ["ok"] * len(images)
        assert outcome(decoder, images[0]) == "ok"  # the replaced pool serves the next images
    finally:
        decoder.close()


def outcome(decoder: Decoder, data: bytes) -> str:
    try:
        return "ok" if decoder(data, 10_000_000).shape == (224, 224, 3) else "wrong shape"
    except RowFailure as failure:
        assert failure.status is RowStatus.DECODE_FAILED
        return failure.reason


def test_auto_uses_processes_from_four_cores():
    assert [auto_decode_processes(cores) for cores in (1, 2, 3, 4, 16)] == [0, 0, 0, 4, 16]


def test_usable_cores_follow_a_cgroup_cpu_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    for text, expected in [("max 100000\n", affinity), ("100000 100000\n", 1), ("150000 100000\n", 2)]:
        cpu_max.write_text(text)
        assert usable_cores(cpu_max) == min(affinity, expected)
    assert usable_cores(tmp_path / "absent") == affinity
