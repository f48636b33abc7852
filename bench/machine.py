"""Machine facts and CPU accounting for benchmarks (who used the cores while we measured)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def wait_for_load_below(threshold: float, limit_seconds: float, poll_seconds: float = 5.0) -> list[float]:
    """Wait (at most limit_seconds) until the 1-minute load average is below threshold; return it."""
    deadline = time.monotonic() + limit_seconds
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        time.sleep(poll_seconds)
    return load_average()


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (e.g. gunicorn's workers), from /proc; empty once it is gone."""
    children: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            children.append(int(entry))
    return sorted(children)


def tensorflow_facts() -> dict[str, object]:
    """TF/Keras versions, the GPUs TensorFlow sees, and its thread pool settings."""
    import keras
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def machine_facts() -> dict[str, object]:
    """What the numbers were measured on, including the CPU's native bf16 (which decides the precision)."""
    from imgsearch.compute import read_cpu_facts

    cpu = read_cpu_facts()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_native_bf16": list(cpu.native_bf16),
        "cpu": cpu.describe(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **tensorflow_facts(),
    }


def cpu_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of all cores since boot, from /proc/stat.

    Busy is user + nice + system + irq + softirq; stolen is time the hypervisor gave our virtual
    CPUs to someone else, a disturbance no load average shows.
    """
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:9]]
    fields += [0] * (8 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def process_seconds(pid: int | str = "self") -> float:
    """CPU seconds (user + system, all threads) one process has used; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """Cores used during a phase: by this process, by helper processes, by everything else, stolen.

    `named_pids` adds further groups of processes (say the API server or Elasticsearch), each reported
    as `<name>_cores` and left out of `other_cores`.
    """

    helper_pids: list[int] = field(default_factory=list)
    named_pids: dict[str, list[int]] = field(default_factory=dict)
    wall: float = 0.0
    own: float = 0.0
    helpers: float = 0.0
    total: float = 0.0
    stolen: float = 0.0
    named: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        self._named_start = self._sample_named()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        named_end = self._sample_named()
        deltas = (b - a for a, b in zip(self._start, end, strict=True))
        self.wall, self.own, self.helpers, self.total, self.stolen = deltas
        self.named = {name: named_end[name] - self._named_start[name] for name in named_end}

    def _sample(self) -> tuple[float, float, float, float, float]:
        helpers = sum(process_seconds(pid) for pid in self.helper_pids)
        busy, stolen = cpu_seconds()
        return time.perf_counter(), process_seconds(), helpers, busy, stolen

    def _sample_named(self) -> dict[str, float]:
        return {name: sum(process_seconds(pid) for pid in pids) for name, pids in self.named_pids.items()}

    def as_dict(self) -> dict[str, float]:
        """Average cores busy over the phase; `others` includes Elasticsearch and other users."""
        wall = self.wall or 1.0
        named = sum(self.named.values())
        others = max(self.total - self.own - self.helpers - named, 0.0)
        return {
            "own_cores": round(self.own / wall, 3),
            "image_server_cores": round(self.helpers / wall, 3),
            **{f"{name}_cores": round(seconds / wall, 3) for name, seconds in self.named.items()},
            "other_cores": round(others / wall, 3),
            "stolen_cores": round(self.stolen / wall, 3),
            "total_cores": round(self.total / wall, 3),
        }
