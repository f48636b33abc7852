"""What differs per Keras backend (KERAS_BACKEND): package check, accelerators, compiled forward pass."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping

import numpy as np

from imgsearch.compute import GpuFacts, quiet_cuda_probe
from imgsearch.settings import ConfigError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"
LABELS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
EXTRAS_HINT = "pip install -r requirements-backends.txt, or unset KERAS_BACKEND for TensorFlow"

# (uint8 images [n, 224, 224, 3]) -> (unit vectors float32 [n, 512], norms [n]), as numpy arrays
Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# the backend-neutral computation: (call the model on a float32 batch, uint8 images) -> (vectors, norms)
Features = Callable[[Callable, object], tuple[object, object]]


def selected_backend(env: Mapping[str, str] | None = None) -> str:
    """The backend Keras runs: the loaded one, else KERAS_BACKEND (Keras reads it at import), else TF."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return (os.environ if env is None else env).get("KERAS_BACKEND", "").strip() or DEFAULT_BACKEND


def require_backend(env: Mapping[str, str] | None = None) -> str:
    """The chosen backend, checked before Keras is imported: a ConfigError naming KERAS_BACKEND when it
    is unknown or its package is not installed."""
    name = selected_backend(env)
    if name not in BACKENDS:
        raise ConfigError(f"KERAS_BACKEND must be one of {', '.join(BACKENDS)}; got {name!r}")
    if importlib.util.find_spec(name) is None:
        raise ConfigError(f"KERAS_BACKEND={name} but the {name} package is not installed ({EXTRAS_HINT})")
    if name == "jax":  # grow GPU memory on demand, as TensorFlow is told to (the API and indexer may share)
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return name


def visible_gpus() -> list:
    """GPUs TensorFlow sees, set to grow memory on demand (the API and the indexer may share one).

    Call it before anything else runs TensorFlow: its first device look-up initialises CUDA, which
    on a machine without a GPU logs a cuInit ERROR that quiet_cuda_probe drops."""
    import tensorflow as tf

    with quiet_cuda_probe():
        gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError, ValueError):  # already initialised: keep TF's allocation
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


def gpu_facts(gpus: list) -> list[GpuFacts]:
    """Name and compute capability of each GPU TensorFlow sees (for the bf16 choice)."""
    import tensorflow as tf

    facts = []
    for gpu in gpus:
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except (RuntimeError, ValueError):
            details = {}
        capability = details.get("compute_capability")
        name = details.get("device_name", gpu.name)
        facts.append(GpuFacts(name, tuple(capability) if capability else None))
    return facts


def parse_capability(value: object) -> tuple[int, int] | None:
    """'9.0' or (9, 0) as (9, 0); None when unknown."""
    if value is None:
        return None
    parts = str(value).split(".") if not isinstance(value, tuple) else value
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError):
        return None


def jax_gpus() -> list[GpuFacts]:
    import jax

    try:
        devices = jax.devices("gpu")
    except RuntimeError:  # no GPU platform: a CPU-only jaxlib, or no driver
        return []
    capability = [parse_capability(getattr(device, "compute_capability", None)) for device in devices]
    return [GpuFacts(device.device_kind, cc) for device, cc in zip(devices, capability, strict=True)]


def torch_gpus() -> list[GpuFacts]:
    import torch

    if not torch.cuda.is_available():
        return []
    cuda = torch.cuda
    indices = range(cuda.device_count())
    return [GpuFacts(cuda.get_device_name(i), cuda.get_device_capability(i)) for i in indices]


def accelerators(backend: str) -> list[GpuFacts]:
    """The GPUs the backend will run on (the first one is used)."""
    if backend == "jax":
        return jax_gpus()
    if backend == "torch":
        return torch_gpus()
    return gpu_facts(visible_gpus())


def cpu_threads(backend: str) -> str:
    """How the backend uses the CPU's cores, for the start-up log."""
    if backend == "tensorflow":
        import tensorflow as tf

        threads = tf.config.threading
        intra, inter = threads.get_intra_op_parallelism_threads(), threads.get_inter_op_parallelism_threads()
        return f"intra-op threads {intra or 'auto'}, inter-op {inter or 'auto'}"
    if backend == "torch":
        import torch

        return f"torch threads {torch.get_num_threads()}"
    return "XLA CPU threads auto"


def compile_forward(backend: str, model, features: Features, compile_mode: str) -> Forward:
    """`features` over `model`, compiled as the backend and `compile_mode` say, returning numpy arrays."""
    build = {"tensorflow": tensorflow_forward, "jax": jax_forward, "torch": torch_forward}[backend]
    return build(model, features, compile_mode)


def tensorflow_forward(model, features: Features, compile_mode: str) -> Forward:
    """One tf.function for every batch size (graph, or XLA with jit_compile)."""
    import tensorflow as tf

    from imgsearch.imaging import TARGET_SIZE

    graph = tf.function(
        lambda images: features(lambda x: model(x, training=False), images),
        input_signature=[tf.TensorSpec([None, *TARGET_SIZE, 3], tf.uint8)],
        jit_compile=compile_mode == "xla",
    )

    def forward(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors, norms = graph(images)
        return vectors.numpy(), norms.numpy()

    return forward


def padded_size(n: int) -> int:
    """The next power of two: jax.jit compiles once per batch shape, so a few shapes serve every n."""
    return 1 << max(n - 1, 0).bit_length()


def jax_forward(model, features: Features, compile_mode: str) -> Forward:
    """jax.jit over a stateless call with the model's variables as arguments (not baked-in constants)."""
    import jax

    def stateless(trainable, fixed, images):
        return features(lambda x: model.stateless_call(trainable, fixed, x, training=False)[0], images)

    compiled = jax.jit(stateless)

    def forward(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(images)
        padding = padded_size(n) - n
        if padding:
            images = np.concatenate([images, np.zeros((padding, *images.shape[1:]), images.dtype)])
        # the variables' current arrays, read per call: Keras's own jitted functions (predict_on_batch)
        # may replace (donate) the buffers a list captured once would still point at
        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]
        vectors, norms = compiled(trainable, fixed, images)
        return np.asarray(vectors)[:n], np.asarray(norms)[:n]

    return forward


def torch_forward(model, features: Features, compile_mode: str) -> Forward:
    """Eager PyTorch under no_grad, or torch.compile (inductor) with dynamic batch sizes."""
    import torch

    def run(images):
        return features(lambda x: model(x, training=False), images)

    if compile_mode == "inductor":
        run = torch.compile(run, dynamic=True)

    def forward(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            vectors, norms = run(torch.from_numpy(np.ascontiguousarray(images)))
        return vectors.detach().cpu().numpy(), norms.detach().cpu().numpy()

    return forward
