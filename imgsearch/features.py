"""VGG16 feature extractor shared by the indexer and the search API (one code path for both)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgsearch import backends
from imgsearch.backends import gpu_facts, visible_gpus  # noqa: F401 - TensorFlow's, imported from here
from imgsearch.compute import ComputePlan, CpuFacts, GpuFacts, plan_compute, read_cpu_facts
from imgsearch.config import ModelConfig
from imgsearch.imaging import TARGET_SIZE

log = logging.getLogger(__name__)
_POLICY_LOCK = threading.Lock()  # Keras's dtype policy is process-global while a model is built

MODEL_ID = "keras-vgg16-notop-maxpool-224-l2"
FEATURE_DIMS = 512
RANDOM_WEIGHTS = "random"
IMAGENET_WEIGHTS = "imagenet"
RANDOM_WEIGHTS_WARNING = (
    "VGG16_WEIGHTS=random: the model uses seeded RANDOM weights, not ImageNet. "
    "Vectors are deterministic but carry no learned semantics; use only for tests and offline demos."
)
MIN_FEATURE_NORM = 1e-6


@dataclass(frozen=True)
class ModelInfo:
    """What built a vector: stored in the index `_meta` and shown by the API."""

    model_id: str
    weights: str
    fingerprint: str
    dims: int = FEATURE_DIMS

    @property
    def is_random(self) -> bool:
        return self.weights == RANDOM_WEIGHTS

    def as_meta(self) -> dict[str, object]:
        return {
            "id": self.model_id,
            "weights": self.weights,
            "fingerprint": self.fingerprint,
            "dims": self.dims,
        }


def describe_weights(weights: str) -> str:
    """Name of the weights for `_meta`: 'imagenet', 'random' or the file's base name."""
    if weights in (IMAGENET_WEIGHTS, RANDOM_WEIGHTS):
        return weights
    return f"file:{os.path.basename(weights)}"


def weights_fingerprint(arrays: list[np.ndarray]) -> str:
    """A stable digest of all weight tensors, so indices built by other weights are detected."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def build_vgg16(weights: str, seed: int, policy: str = "float32"):
    """Build Keras VGG16 (no top, global max pooling) with imagenet, file or seeded random weights.

    `policy` is the Keras dtype policy of its layers ("mixed_bfloat16": bf16 compute, float32
    variables, so the weights and their fingerprint are the same in every precision)."""
    import keras

    from_file = weights not in (IMAGENET_WEIGHTS, RANDOM_WEIGHTS)
    if from_file and not os.path.isfile(weights):
        raise FileNotFoundError(f"VGG16_WEIGHTS file not found: {weights}")
    if weights == RANDOM_WEIGHTS:
        log.warning("!" * 20 + " %s (seed=%d) " + "!" * 20, RANDOM_WEIGHTS_WARNING, seed)
        keras.utils.set_random_seed(seed)
    keras_weights = IMAGENET_WEIGHTS if weights == IMAGENET_WEIGHTS else None
    with _POLICY_LOCK:
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            model = keras.applications.VGG16(
                include_top=False,
                weights=keras_weights,
                pooling="max",
                input_shape=(*TARGET_SIZE, 3),
            )
        finally:
            keras.config.set_dtype_policy(previous)
    if from_file:
        model.load_weights(weights)
    if weights == RANDOM_WEIGHTS:
        model.set_weights(seeded_weights([w.shape for w in model.weights], seed))
    return model


def seeded_weights(shapes: list[tuple[int, ...]], seed: int) -> list[np.ndarray]:
    """Keras's default initialisers (glorot_uniform kernels, zero biases) drawn by numpy from `seed`:
    the same values under every Keras backend (each backend's own random generator differs), so
    VGG16_WEIGHTS=random gives one fingerprint and the same vectors everywhere."""
    rng = np.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        if len(shape) < 2:
            arrays.append(np.zeros(shape, np.float32))
            continue
        receptive = int(np.prod(shape[:-2]))
        limit = np.sqrt(6.0 / (shape[-2] * receptive + shape[-1] * receptive))
        arrays.append(rng.uniform(-limit, limit, shape).astype(np.float32))
    return arrays


def describe_device(gpus: list[GpuFacts], cpu: CpuFacts, compute: ComputePlan) -> str:
    """Where and how the model runs, for the log and benchmarks: the backend places it on the first GPU."""
    how = f"{compute.backend}, {compute.precision}, {compute.compile}"
    if gpus:
        return f"GPU {gpus[0].name} ({len(gpus)} visible, {how})"
    label = backends.LABELS[compute.backend]
    return f"CPU {cpu.describe()} (no GPU visible to {label}; {backends.cpu_threads(compute.backend)}; {how})"


def normalised_features(call: Callable, images) -> tuple[object, object]:
    """Backend-neutral: uint8 RGB → preprocess_input (caffe BGR mean) → `call` (VGG16) → (unit
    features float32, norms); compiled by each backend (imgsearch.backends)."""
    import keras
    from keras import ops

    x = keras.applications.vgg16.preprocess_input(ops.cast(images, "float32"))
    features = ops.cast(call(x), "float32")  # bf16 out of a mixed model
    norms = ops.sqrt(ops.sum(ops.square(features), axis=1))
    return features / ops.maximum(norms, MIN_FEATURE_NORM)[:, None], norms


class FeatureExtractor:
    """Loads VGG16 once; turns batches of decoded images into unit-length 512-d vectors."""

    def __init__(
        self,
        weights: str = IMAGENET_WEIGHTS,
        seed: int = 0,
        precision: str = "auto",
        compile_mode: str = "auto",
        batch_size: int | None = None,
    ) -> None:
        """`auto` precision and compile mode follow the hardware (imgsearch.compute); others force them.
        The Keras backend is KERAS_BACKEND's (ConfigError when its package is missing)."""
        backend = backends.require_backend()
        gpus = backends.accelerators(backend)
        cpu = read_cpu_facts()
        self.compute = plan_compute(precision, compile_mode, cpu, gpus, batch_size, backend)
        self.device = describe_device(gpus, cpu, self.compute)
        self._model = build_vgg16(weights, seed, self.compute.keras_policy)
        self.info = ModelInfo(
            model_id=MODEL_ID,
            weights=describe_weights(weights),
            fingerprint=weights_fingerprint(self._model.get_weights()),
        )
        self._forward = backends.compile_forward(
            backend, self._model, normalised_features, self.compute.compile
        )
        self._lock = threading.Lock()
        log.info(
            "VGG16 ready on %s: weights=%s fingerprint=%s batch=%d (%s)",
            self.device,
            self.info.weights,
            self.info.fingerprint,
            self.compute.batch_size,
            self.compute.reason,
        )

    @property
    def keras_model(self):
        """The underlying Keras model (for benchmarks and weight export)."""
        return self._model

    def warm_up(self) -> None:
        """Trace and compile once so the first real request is not slow."""
        self.extract(np.zeros((1, *TARGET_SIZE, 3), dtype=np.uint8))

    def extract(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (unit vectors float32 [n, 512], raw norms [n]) for uint8 images [n, 224, 224, 3]."""
        if images.ndim != 4 or images.shape[1:] != (*TARGET_SIZE, 3):
            raise ValueError(f"expected images of shape [n, 224, 224, 3], got {images.shape}")
        with self._lock:
            vectors, norms = self._forward(images)
        return vectors.astype(np.float32), norms

    @classmethod
    def from_config(cls, config: ModelConfig, batch_size: int | None = None) -> FeatureExtractor:
        """The extractor the VGG16_* variables describe (weights, seed, precision, compile mode)."""
        return cls(config.weights, config.seed, config.precision, config.compile_mode, batch_size)

    def extract_one(self, image: np.ndarray) -> np.ndarray:
        """Unit vector for one decoded image; raises ValueError if the feature is all zero."""
        vectors, norms = self.extract(image[None, ...])
        if norms[0] < MIN_FEATURE_NORM:
            raise ValueError("the image produced an all-zero feature vector")
        return vectors[0]
