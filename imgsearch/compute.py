"""How the model computes here: precision, compile mode and batch size chosen from the hardware."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from imgsearch.settings import ConfigError

PRECISIONS = ("auto", "float32", "bfloat16")
COMPILE_MODES = ("auto", "graph", "xla", "eager", "inductor")
# The compile modes of each Keras backend (KERAS_BACKEND), `auto`'s choice first for the non-TF ones.
BACKEND_COMPILE_MODES = {"tensorflow": ("graph", "xla"), "jax": ("xla",), "torch": ("eager", "inductor")}
BACKEND_AUTO_COMPILE = {
    "jax": "JAX compiles with XLA (jax.jit over a stateless call)",
    "torch": "eager PyTorch (torch.compile, VGG16_COMPILE=inductor, is not measured)",
}
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# AVX512_BF16 alone outruns float32 only on AMD (Zen 4: its bf16 dot product does twice an FMA's work);
# on Intel without AMX (Xeon model 207, AMX not exposed) bf16 measured 5.67 vs float32's 10.50 img/s.
FAST_AVX512_BF16_VENDORS = ("AuthenticAMD",)
BF16_GPU_COMPUTE_CAPABILITY = (8, 0)  # Ampere and newer have bf16 tensor cores
CPU_FLOAT32_BATCH = 8
CPU_BFLOAT16_BATCH = 32  # bf16 b32 vs b8: 84.5 vs 70.9 img/s on Xeon AMX, a tie on Zen 4 (14.00 vs 14.02)
GPU_BATCH = 64  # the fastest of 64..256 on an H200 in both precisions (docs/hardware.md)
GPU_DEVICE_NODES = ("/dev/nvidia*", "/dev/dxg")  # NVIDIA driver files on Linux; GPUs under WSL2
# TensorFlow's CUDA build logs this ERROR at its first device look-up wherever no CUDA driver exists.
CUINIT_NO_DRIVER_LINE = re.compile(rb"failed call to cuInit: .*\(303\)")
_STDERR_LOCK = threading.Lock()  # descriptor 2 is process-wide: one redirection at a time


@dataclass(frozen=True)
class CpuFacts:
    """The CPU's model name, vendor and the flags that decide bf16 (read from /proc/cpuinfo on Linux)."""

    model: str
    flags: frozenset[str]
    cores: int
    vendor: str = "unknown"

    @property
    def native_bf16(self) -> tuple[str, ...]:
        """The CPU flags that compute bf16 natively (empty: bf16 would be emulated, and slower)."""
        return tuple(flag for flag in NATIVE_BF16_CPU_FLAGS if flag in self.flags)

    @property
    def fast_bf16(self) -> bool:
        """bf16 runs faster than float32 here: AMX, or AVX512_BF16 from a vendor where it measured faster."""
        avx512_bf16 = "avx512_bf16" in self.flags and self.vendor in FAST_AVX512_BF16_VENDORS
        return "amx_bf16" in self.flags or avx512_bf16

    @property
    def has_avx512(self) -> bool:
        return "avx512f" in self.flags

    def describe(self) -> str:
        """'AMD EPYC, 2 cores, native bf16: avx512_bf16' (for logs and benchmarks)."""
        bf16 = ", ".join(self.native_bf16) or "none (no AMX, no AVX512_BF16)"
        return f"{self.model}, {self.cores} cores, native bf16: {bf16}"


@dataclass(frozen=True)
class GpuFacts:
    """An accelerator the backend sees, and its CUDA compute capability when known."""

    name: str
    compute_capability: tuple[int, int] | None = None

    @property
    def native_bf16(self) -> bool:
        return self.compute_capability is not None and self.compute_capability >= BF16_GPU_COMPUTE_CAPABILITY


def parse_cpuinfo(text: str, cores: int) -> CpuFacts:
    """CpuFacts from the text of /proc/cpuinfo (the first processor's model name, vendor and flags)."""
    first: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    flags = frozenset(first.get("flags", "").split())
    model, vendor = first.get("model name") or "unknown CPU", first.get("vendor_id") or "unknown"
    return CpuFacts(model=model, flags=flags, cores=cores, vendor=vendor)


def read_cpu_facts(path: str = "/proc/cpuinfo") -> CpuFacts:
    """This machine's CPU; without /proc/cpuinfo (not Linux) nothing counts as native bf16."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, os.cpu_count() or 1)


def gpu_device_nodes(patterns: tuple[str, ...] = GPU_DEVICE_NODES) -> list[str]:
    """The GPU driver's device files on this machine, found without initialising CUDA."""
    return sorted(path for pattern in patterns for path in glob.glob(pattern))


def gpu_expected(env: Mapping[str, str] | None = None) -> bool:
    """Whether a GPU may be here: driver device files exist, or CUDA_VISIBLE_DEVICES names a device."""
    visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES", "").strip()
    return bool(gpu_device_nodes()) or visible not in ("", "-1")


def drop_cuinit_noise(captured: bytes) -> bytes:
    """`captured` stderr output without TensorFlow's 'failed call to cuInit ... (303)' lines."""
    lines = captured.splitlines(keepends=True)
    return b"".join(line for line in lines if not CUINIT_NO_DRIVER_LINE.search(line))


def write_stderr(data: bytes) -> None:
    """Write all of `data` to file descriptor 2."""
    while data:
        data = data[os.write(2, data) :]


@contextlib.contextmanager
def stderr_filtered(keep: Callable[[bytes], bytes]) -> Iterator[None]:
    """For the block, descriptor 2 (C++ and Python output alike) goes to a file; afterwards
    `keep(what was written)` goes to the real stderr. Where it cannot be redirected, nothing changes."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 to redirect
            saved = None
        if saved is None:
            yield
            return
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            write_stderr(keep(capture.read()))


@contextlib.contextmanager
def quiet_cuda_probe(gpu_present: bool | None = None) -> Iterator[None]:
    """Around TensorFlow's first device look-up: where no GPU can be present, drop its cuInit (303)
    ERROR line, which C++ logging prints whatever TF_CPP_MIN_LOG_LEVEL=2 says. Where a GPU may be
    present nothing changes, so a real CUDA failure is still printed."""
    if gpu_expected() if gpu_present is None else gpu_present:
        yield
        return
    with stderr_filtered(drop_cuinit_noise):
        yield


@dataclass(frozen=True)
class ComputePlan:
    """The Keras backend, precision, compile mode and batch size the model runs with, and why."""

    precision: str
    compile: str
    batch_size: int
    reason: str
    backend: str = "tensorflow"

    @property
    def keras_policy(self) -> str:
        return "mixed_bfloat16" if self.precision == "bfloat16" else "float32"

    def as_meta(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "compile": self.compile,
            "batch_size": self.batch_size,
            "reason": self.reason,
        }


def choose_precision(requested: str, cpu: CpuFacts, gpus: list[GpuFacts]) -> tuple[str, str]:
    """(float32 | bfloat16, why): `auto` takes bf16 only where the hardware computes it natively and
    faster than float32 (CpuFacts.fast_bf16)."""
    if requested != "auto":
        return requested, f"VGG16_PRECISION={requested}"
    if gpus:
        gpu = gpus[0]
        if gpu.native_bf16:
            return "bfloat16", f"auto: GPU {gpu.name} (compute capability {gpu.compute_capability}) has bf16"
        return "float32", f"auto: GPU {gpu.name} has no bf16 tensor cores (or an unknown capability)"
    if cpu.fast_bf16:
        return "bfloat16", f"auto: the CPU computes bf16 natively ({', '.join(cpu.native_bf16)})"
    if cpu.native_bf16:
        return "float32", (
            f"auto: avx512_bf16 without AMX on a {cpu.vendor} CPU runs bf16 slower than float32 "
            "(1.85x slower on an Intel Xeon without AMX, docs/hardware.md)"
        )
    return "float32", "auto: the CPU has no native bf16 (no amx_bf16/avx512_bf16); emulated bf16 is slower"


def choose_backend_compile(requested: str, backend: str) -> tuple[str, str]:
    """(compile mode, why) under JAX or torch; a mode of another backend is a ConfigError naming both."""
    modes = BACKEND_COMPILE_MODES[backend]
    if requested == "auto":
        return modes[0], f"auto: {BACKEND_AUTO_COMPILE[backend]}"
    if requested not in modes:
        raise ConfigError(
            f"VGG16_COMPILE={requested} is not a compile mode of KERAS_BACKEND={backend} "
            f"(one of auto, {', '.join(modes)})"
        )
    return requested, f"VGG16_COMPILE={requested}"


def choose_compile(
    requested: str, precision: str, cpu: CpuFacts, gpus: list[GpuFacts], backend: str = "tensorflow"
) -> tuple[str, str]:
    """(graph | xla, why), from what bench/indexer.py measured on each CPU type (docs/hardware.md);
    JAX and torch have their own modes (choose_backend_compile)."""
    if backend != "tensorflow":
        return choose_backend_compile(requested, backend)
    if requested not in BACKEND_COMPILE_MODES["tensorflow"] + ("auto",):
        raise ConfigError(f"VGG16_COMPILE={requested} is not a compile mode of KERAS_BACKEND=tensorflow")
    if requested != "auto":
        return requested, f"VGG16_COMPILE={requested}"
    if gpus:
        return "graph", "auto: TensorFlow's graph on a GPU"
    if precision == "bfloat16":
        return "graph", "auto: XLA's CPU backend has no AMX/AVX512_BF16 kernels (bf16 2.4-8x slower there)"
    if cpu.has_avx512:
        return "graph", "auto: float32 on an AVX-512 CPU runs faster in TensorFlow's graph (oneDNN) than XLA"
    return "xla", "auto: float32 on an AVX2 CPU runs 3-5% faster under XLA"


def default_batch_size(precision: str, gpus: list[GpuFacts]) -> int:
    """Images per model call for the indexer: the fastest measured per device and precision."""
    if gpus:
        return GPU_BATCH
    return CPU_BFLOAT16_BATCH if precision == "bfloat16" else CPU_FLOAT32_BATCH


def plan_compute(
    precision: str,
    compile_mode: str,
    cpu: CpuFacts,
    gpus: list[GpuFacts],
    batch_size: int | None = None,
    backend: str = "tensorflow",
) -> ComputePlan:
    """The whole choice: requested values win over `auto`; the reason names both decisions."""
    if precision not in PRECISIONS:
        raise ValueError(f"VGG16_PRECISION must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"VGG16_COMPILE must be one of {', '.join(COMPILE_MODES)}; got {compile_mode!r}")
    chosen_precision, precision_reason = choose_precision(precision, cpu, gpus)
    chosen_compile, compile_reason = choose_compile(compile_mode, chosen_precision, cpu, gpus, backend)
    return ComputePlan(
        backend=backend,
        precision=chosen_precision,
        compile=chosen_compile,
        batch_size=batch_size or default_batch_size(chosen_precision, gpus),
        reason=f"precision {precision_reason}; compile {compile_reason}",
    )
