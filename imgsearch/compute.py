"""How the model computes here: precision, compile mode and batch size chosen from the hardware."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16")
COMPILE_MODES = ("auto", "graph", "xla")
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
BF16_GPU_COMPUTE_CAPABILITY = (8, 0)  # Ampere and newer have bf16 tensor cores
CPU_FLOAT32_BATCH = 8
CPU_BFLOAT16_BATCH = 32  # bf16 b32 vs b8: 84.5 vs 70.9 img/s on Xeon AMX, a tie on Zen 4 (14.00 vs 14.02)
GPU_BATCH = 64  # the fastest of 64..256 on an H200 in both precisions (docs/hardware.md)


@dataclass(frozen=True)
class CpuFacts:
    """The CPU's model name and the flags that decide bf16 (read from /proc/cpuinfo on Linux)."""

    model: str
    flags: frozenset[str]
    cores: int

    @property
    def native_bf16(self) -> tuple[str, ...]:
        """The CPU flags that compute bf16 natively (empty: bf16 would be emulated, and slower)."""
        return tuple(flag for flag in NATIVE_BF16_CPU_FLAGS if flag in self.flags)

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
    """CpuFacts from the text of /proc/cpuinfo (the first processor's model name and flags)."""
    model, flags = "unknown CPU", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuFacts(model=model, flags=flags, cores=cores)


def read_cpu_facts(path: str = "/proc/cpuinfo") -> CpuFacts:
    """This machine's CPU; without /proc/cpuinfo (not Linux) nothing counts as native bf16."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, os.cpu_count() or 1)


@dataclass(frozen=True)
class ComputePlan:
    """The precision, compile mode and batch size the model runs with, and why."""

    precision: str
    compile: str
    batch_size: int
    reason: str

    @property
    def keras_policy(self) -> str:
        return "mixed_bfloat16" if self.precision == "bfloat16" else "float32"

    def as_meta(self) -> dict[str, object]:
        return {
            "precision": self.precision,
            "compile": self.compile,
            "batch_size": self.batch_size,
            "reason": self.reason,
        }


def choose_precision(requested: str, cpu: CpuFacts, gpus: list[GpuFacts]) -> tuple[str, str]:
    """(float32 | bfloat16, why): `auto` takes bf16 only where the hardware computes it natively."""
    if requested != "auto":
        return requested, f"VGG16_PRECISION={requested}"
    if gpus:
        gpu = gpus[0]
        if gpu.native_bf16:
            return "bfloat16", f"auto: GPU {gpu.name} (compute capability {gpu.compute_capability}) has bf16"
        return "float32", f"auto: GPU {gpu.name} has no bf16 tensor cores (or an unknown capability)"
    if cpu.native_bf16:
        return "bfloat16", f"auto: the CPU computes bf16 natively ({', '.join(cpu.native_bf16)})"
    return "float32", "auto: the CPU has no native bf16 (no amx_bf16/avx512_bf16); emulated bf16 is slower"


def choose_compile(requested: str, precision: str, cpu: CpuFacts, gpus: list[GpuFacts]) -> tuple[str, str]:
    """(graph | xla, why), from what bench/indexer.py measured on each CPU type (docs/hardware.md)."""
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
    precision: str, compile_mode: str, cpu: CpuFacts, gpus: list[GpuFacts], batch_size: int | None = None
) -> ComputePlan:
    """The whole choice: requested values win over `auto`; the reason names both decisions."""
    if precision not in PRECISIONS:
        raise ValueError(f"VGG16_PRECISION must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"VGG16_COMPILE must be one of {', '.join(COMPILE_MODES)}; got {compile_mode!r}")
    chosen_precision, precision_reason = choose_precision(precision, cpu, gpus)
    chosen_compile, compile_reason = choose_compile(compile_mode, chosen_precision, cpu, gpus)
    return ComputePlan(
        precision=chosen_precision,
        compile=chosen_compile,
        batch_size=batch_size or default_batch_size(chosen_precision, gpus),
        reason=f"precision {precision_reason}; compile {compile_reason}",
    )
