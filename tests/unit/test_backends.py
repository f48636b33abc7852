"""Keras backends: TensorFlow and JAX give the same vectors and fingerprint; clear start-up errors."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.backends import padded_size, parse_capability
from imgsearch.compute import parse_cpuinfo, plan_compute

REPO = Path(__file__).resolve().parents[2]
# In a child process: decode the PNG/JPEG files given, run the random-weights model in float32 (again
# after Keras's own predict, which under JAX replaces the variables' buffers), save the vectors and
# print the fingerprint and compute plan.
EXTRACT = """
import json, sys
from pathlib import Path
import numpy as np
from imgsearch.features import FeatureExtractor
from imgsearch.imaging import decode_image
folder = Path(sys.argv[1])
images = np.stack([decode_image(path.read_bytes()) for path in sorted(folder.glob("image-*"))])
model = FeatureExtractor("random", seed=1234, precision="float32")
vectors, _ = model.extract(images)
model.keras_model.predict_on_batch(np.zeros((1, 224, 224, 3), np.float32))  # under JAX: new variable buffers
assert np.array_equal(model.extract(images)[0], vectors)
np.save(folder / f"{model.compute.backend}.npy", vectors)
print(json.dumps({"fingerprint": model.info.fingerprint, "compute": model.compute.as_meta()}))
"""


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


needs_jax = pytest.mark.skipif(
    not installed("jax"), reason="jax is not installed (requirements-backends.txt)"
)


def run_under(backend: str, code: str, *args: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter with KERAS_BACKEND=backend (Keras reads it once, at import)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def write_images(folder: Path) -> None:
    """A few real encoded images: gradients and noise, as PNG and JPEG of several sizes."""
    from PIL import Image

    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 320, dtype=np.uint8)
    pictures = [
        np.stack(
            [np.tile(ramp, (240, 1)), np.tile(ramp[:240, None], (1, 320)), 255 - np.tile(ramp, (240, 1))], 2
        ),
        rng.integers(0, 255, (300, 200, 3), dtype=np.uint8),
        np.repeat(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), 8, axis=0).repeat(8, axis=1),
    ]
    for index, picture in enumerate(pictures):
        for form in ("PNG", "JPEG"):
            buffer = io.BytesIO()
            Image.fromarray(picture).save(buffer, form)
            (folder / f"image-{index}.{form.lower()}").write_bytes(buffer.getvalue())


@pytest.mark.parametrize(
    ("other", "compiled"),
    [
        pytest.param("jax", "xla", marks=needs_jax),
        # torch is not in requirements-backends.txt (GBs of CUDA libraries); where it is installed, it runs
        pytest.param("torch", "eager", marks=pytest.mark.skipif(not installed("torch"), reason="no torch")),
    ],
)
def test_tensorflow_and_another_backend_give_the_same_vectors_and_fingerprint(tmp_path, other, compiled):
    """An index built under one backend is searched by an API under the other (same weights)."""
    write_images(tmp_path)
    results = {}
    for backend in ("tensorflow", other):
        done = run_under(backend, EXTRACT, str(tmp_path))
        assert done.returncode == 0, done.stderr[-3000:]
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
        assert results[backend]["compute"]["backend"] == backend
    assert results["tensorflow"]["fingerprint"] == results[other]["fingerprint"]
    assert results[other]["compute"]["compile"] == compiled
    tf_vectors, other_vectors = np.load(tmp_path / "tensorflow.npy"), np.load(tmp_path / f"{other}.npy")
    assert tf_vectors.shape == other_vectors.shape == (6, 512)
    cosines = (tf_vectors * other_vectors).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("nosuch", "KERAS_BACKEND must be one of tensorflow, jax, torch; got 'nosuch'"),
        ("torch", "torch package"),
    ],
)
def test_an_unknown_or_missing_backend_is_a_clear_error(backend, message):
    if backend == "torch" and installed("torch"):
        pytest.skip("torch is installed here")
    code = "from imgsearch.features import FeatureExtractor; FeatureExtractor('random')"
    done = run_under(backend, code)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("imgsearch.settings.ConfigError: ") and message in last, last
    assert "KERAS_BACKEND" in last


def test_the_model_variables_check_keras_backend_before_anything_connects():
    """The indexer's and the API's configuration (ModelConfig) stops on a bad KERAS_BACKEND, exit 2."""
    code = "import os; from imgsearch.config import load_model_config; load_model_config(os.environ)"
    done = run_under("nosuch", code)
    assert "ConfigError: KERAS_BACKEND must be one of tensorflow, jax, torch" in done.stderr
    assert run_under("tensorflow", code).returncode == 0


def test_jax_and_torch_compile_modes():
    zen4 = parse_cpuinfo("flags\t: avx512f avx512_bf16\n", cores=2)
    jax = plan_compute("auto", "auto", zen4, [], backend="jax")
    assert (jax.backend, jax.compile) == ("jax", "xla") and jax.as_meta()["backend"] == "jax"
    assert plan_compute("float32", "auto", zen4, [], backend="torch").compile == "eager"
    assert plan_compute("float32", "inductor", zen4, [], backend="torch").compile == "inductor"
    with pytest.raises(ValueError, match="VGG16_COMPILE=graph is not a compile mode of KERAS_BACKEND=jax"):
        plan_compute("auto", "graph", zen4, [], backend="jax")
    with pytest.raises(ValueError, match="KERAS_BACKEND=tensorflow"):
        plan_compute("auto", "eager", zen4, [])


def test_jax_batches_pad_to_a_few_shapes_and_capabilities_parse():
    assert [padded_size(n) for n in (1, 2, 3, 5, 8, 9, 32)] == [1, 2, 4, 8, 8, 16, 32]
    assert parse_capability("9.0") == (9, 0) and parse_capability((8, 6)) == (8, 6)
    assert parse_capability(None) is None and parse_capability("unknown") is None
