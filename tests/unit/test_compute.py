"""The hardware rules: which precision, compile mode and batch size each machine kind gets, and why."""

from __future__ import annotations

import pytest

from imgsearch.compute import CpuFacts, GpuFacts, parse_cpuinfo, plan_compute

ZEN3 = "fpu sse sse2 avx avx2 fma f16c"
ZEN4 = "fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni"
XEON_AMX = "fpu sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
SKYLAKE = "fpu sse2 avx avx2 avx512f avx512bw"
XEON_NO_AMX = "fpu sse2 avx avx2 avx512f avx512_bf16 avx512_fp16 avx512_vnni"  # AMX not exposed (a VM)
VENDORS = {ZEN3: "AuthenticAMD", ZEN4: "AuthenticAMD"}  # the rest: GenuineIntel


def cpuinfo(model: str, flags: str, vendor: str = "GenuineIntel") -> str:
    block = f"processor\t: {{n}}\nvendor_id\t: {vendor}\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
    return block.format(n=0) + block.format(n=1)


def cpu(flags: str) -> CpuFacts:
    return parse_cpuinfo(cpuinfo("Test CPU", flags, VENDORS.get(flags, "GenuineIntel")), cores=2)


def test_parse_cpuinfo_reads_model_flags_and_native_bf16():
    facts = parse_cpuinfo(cpuinfo("Intel(R) Xeon(R) Platinum 8481C", XEON_AMX), cores=2)
    assert (facts.model, facts.vendor) == ("Intel(R) Xeon(R) Platinum 8481C", "GenuineIntel")
    assert facts.native_bf16 == ("amx_bf16", "avx512_bf16") and facts.has_avx512
    assert "amx_bf16" in facts.describe() and "2 cores" in facts.describe()
    unknown = parse_cpuinfo("", cores=1)  # no /proc/cpuinfo: nothing is native
    assert (unknown.native_bf16, unknown.model, unknown.vendor) == ((), "unknown CPU", "unknown")


@pytest.mark.parametrize(
    ("flags", "precision", "compile_mode", "batch"),
    [
        (ZEN3, "float32", "xla", 8),  # AVX2 only: emulated bf16 is slower; XLA measured +3-5%
        (SKYLAKE, "float32", "graph", 8),  # AVX-512 without bf16
        (ZEN4, "bfloat16", "graph", 32),  # avx512_bf16 (measured 14.00 vs 6.70 img/s float32 graph)
        (XEON_NO_AMX, "float32", "graph", 8),  # Intel avx512_bf16 alone (measured bf16 5.67 vs 10.50 img/s)
        (XEON_AMX, "bfloat16", "graph", 32),  # AMX (measured 84.5 vs 10.9 img/s float32)
    ],
)
def test_auto_follows_the_cpu(flags, precision, compile_mode, batch):
    plan = plan_compute("auto", "auto", cpu(flags), [])
    assert (plan.precision, plan.compile, plan.batch_size) == (precision, compile_mode, batch)
    assert plan.reason.startswith("precision auto: ") and "compile auto: " in plan.reason
    assert plan.keras_policy == ("mixed_bfloat16" if precision == "bfloat16" else "float32")


def test_auto_never_picks_bf16_without_native_support():
    for flags in (ZEN3, SKYLAKE, ""):
        plan = plan_compute("auto", "auto", cpu(flags), [])
        assert plan.precision == "float32" and "no native bf16" in plan.reason


def test_intel_avx512_bf16_without_amx_keeps_float32_and_says_why():
    """The same flags that make Zen 4 take bf16 keep float32 on Intel and on an unknown vendor."""
    for vendor in ("GenuineIntel", "unknown"):
        facts = parse_cpuinfo(cpuinfo("Test CPU", ZEN4, vendor), cores=2)
        plan = plan_compute("auto", "auto", facts, [])
        assert facts.native_bf16 == ("avx512_bf16",) and not facts.fast_bf16
        assert (plan.precision, plan.compile, plan.batch_size) == ("float32", "graph", 8)
        assert f"avx512_bf16 without AMX on a {vendor} CPU runs bf16 slower" in plan.reason
    assert plan_compute("auto", "auto", cpu(XEON_AMX), []).precision == "bfloat16"  # AMX: any vendor


def test_forced_values_win_and_are_named():
    plan = plan_compute("bfloat16", "xla", cpu(ZEN3), [], batch_size=16)
    assert (plan.precision, plan.compile, plan.batch_size) == ("bfloat16", "xla", 16)
    assert "VGG16_PRECISION=bfloat16" in plan.reason and "VGG16_COMPILE=xla" in plan.reason
    forced = plan_compute("float32", "auto", cpu(XEON_AMX), [])
    assert (forced.precision, forced.compile) == ("float32", "graph")


def test_gpus_choose_by_compute_capability():
    h200 = GpuFacts("NVIDIA H200", (9, 0))
    t4 = GpuFacts("Tesla T4", (7, 5))
    assert plan_compute("auto", "auto", cpu(ZEN3), [h200]).precision == "bfloat16"
    assert plan_compute("auto", "auto", cpu(XEON_AMX), [t4]).precision == "float32"
    assert plan_compute("auto", "auto", cpu(ZEN3), [GpuFacts("unknown")]).precision == "float32"
    plan = plan_compute("auto", "auto", cpu(ZEN3), [h200])
    assert (plan.compile, plan.batch_size) == ("graph", 64)


@pytest.mark.parametrize(
    ("precision", "compile_mode", "named"),
    [("fp16", "auto", "VGG16_PRECISION"), ("auto", "jit", "VGG16_COMPILE")],
)
def test_unknown_values_name_the_variable(precision, compile_mode, named):
    with pytest.raises(ValueError, match=named):
        plan_compute(precision, compile_mode, cpu(ZEN3), [])


def test_meta_records_choice_and_reason():
    meta = plan_compute("auto", "auto", cpu(ZEN4), []).as_meta()
    assert meta["precision"] == "bfloat16" and meta["compile"] == "graph" and meta["batch_size"] == 32
    assert "avx512_bf16" in meta["reason"]
