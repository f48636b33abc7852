"""Forward-pass speed of the extractor per Keras backend and precision (one subprocess each, in turn)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CASES = ("tensorflow:auto", "tensorflow:float32", "jax:float32", "jax:bfloat16")


def measure(precision: str, batch: int, repetitions: int) -> dict[str, object]:
    """In this process (KERAS_BACKEND already set): img/s of FeatureExtractor.extract at `batch`."""
    import numpy as np

    from imgsearch.features import FeatureExtractor

    extractor = FeatureExtractor("random", seed=1234, precision=precision, batch_size=batch)
    images = np.random.default_rng(0).integers(0, 255, (batch, 224, 224, 3), dtype=np.uint8)
    started = time.perf_counter()
    extractor.extract(images)  # traces and compiles
    first = time.perf_counter() - started
    rates = []
    for _ in range(repetitions):
        started = time.perf_counter()
        extractor.extract(images)
        rates.append(batch / (time.perf_counter() - started))
    plan = extractor.compute
    return {
        "backend": plan.backend,
        "precision": plan.precision,
        "compile": plan.compile,
        "batch": batch,
        "first_call_s": round(first, 1),
        "img_per_s": [round(r, 2) for r in rates],
    }


def run_case(case: str, batch: int, repetitions: int) -> dict[str, object]:
    """One `backend:precision` case in its own process (KERAS_BACKEND is process-wide)."""
    backend, precision = case.split(":")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    command = [sys.executable, __file__, "--in-process", precision, "--batch", str(batch)]
    command += ["--repetitions", str(repetitions)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cases", nargs="*", default=DEFAULT_CASES, help="backend:precision, e.g. jax:float32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--in-process", metavar="PRECISION", help="measure here, under this KERAS_BACKEND")
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps(measure(args.in_process, args.batch, args.repetitions)))
        return
    for case in args.cases:
        print(json.dumps(run_case(case, args.batch, args.repetitions)), flush=True)


if __name__ == "__main__":
    main()
