"""TensorFlow start-up on a machine without a GPU: no cuInit ERROR line, every other line kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgsearch import compute
from imgsearch.compute import drop_cuinit_noise, gpu_expected, quiet_cuda_probe

REPO = Path(__file__).resolve().parents[2]
CUINIT_LINE = (
    b"E0000 00:00:1796440580.999495   31535 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
OTHER_ERROR = b"E0000 00:00:1796440581.000000   31535 other.cc:1] a real error\n"
START_MODEL = "from imgsearch.features import FeatureExtractor; print(FeatureExtractor('random').device)"


def test_drop_cuinit_noise_keeps_every_other_line_in_order():
    captured = b"first\n" + CUINIT_LINE + OTHER_ERROR + b"last without newline"
    assert drop_cuinit_noise(captured) == b"first\n" + OTHER_ERROR + b"last without newline"
    other_cuinit = CUINIT_LINE.replace(b"(303)", b"(999)")  # another failure is a real error
    assert drop_cuinit_noise(other_cuinit) == other_cuinit


def write_both_lines() -> None:
    for line in (b"before\n", CUINIT_LINE, OTHER_ERROR):  # as C++ logging writes: to descriptor 2
        os.write(2, line)


def test_quiet_probe_drops_only_the_cuinit_line_without_a_gpu(capfd):
    with quiet_cuda_probe(gpu_present=False):
        write_both_lines()
    assert capfd.readouterr().err == "before\n" + OTHER_ERROR.decode()


def test_quiet_probe_changes_nothing_where_a_gpu_may_be(capfd):
    with quiet_cuda_probe(gpu_present=True):
        write_both_lines()
    assert capfd.readouterr().err == (b"before\n" + CUINIT_LINE + OTHER_ERROR).decode()


def test_quiet_probe_restores_stderr_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError, match="boom"), quiet_cuda_probe(gpu_present=False):
        os.write(2, b"kept\n" + CUINIT_LINE)
        raise RuntimeError("boom")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "kept\nafter\n"


def test_gpu_expected_from_device_files_or_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(compute, "gpu_device_nodes", lambda: [])
    assert not gpu_expected({})
    assert not gpu_expected({"CUDA_VISIBLE_DEVICES": ""})
    assert not gpu_expected({"CUDA_VISIBLE_DEVICES": "-1"})
    assert gpu_expected({"CUDA_VISIBLE_DEVICES": "0"})  # asked for a GPU: a cuInit failure matters
    monkeypatch.setattr(compute, "gpu_device_nodes", lambda: ["/dev/nvidia0"])
    assert gpu_expected({})


@pytest.mark.skipif(gpu_expected(), reason="this machine may have a GPU: TensorFlow's output is unchanged")
def test_model_start_prints_no_cuinit_line_on_a_cpu_only_machine():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "VGG16_WEIGHTS": "random"}
    done = subprocess.run(
        [sys.executable, "-c", START_MODEL], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "CPU" in done.stdout
    assert "RANDOM weights" in done.stderr  # stderr still comes through
    assert "cuInit" not in done.stderr
