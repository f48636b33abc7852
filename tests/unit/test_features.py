"""VGG16 extractor: unit vectors, determinism, batch independence, weights from a file."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.features import FeatureExtractor, describe_weights, weights_fingerprint


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)


def test_vectors_are_512_d_unit_length(extractor, images):
    vectors, norms = extractor.extract(images)
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (norms > 0).all()


def test_batching_does_not_change_a_vector(extractor, images):
    batched, _ = extractor.extract(images)
    single = extractor.extract_one(images[1])
    np.testing.assert_allclose(batched[1], single, atol=1e-4)


def test_wrong_shape_is_refused(extractor):
    with pytest.raises(ValueError, match="224, 224, 3"):
        extractor.extract(np.zeros((1, 100, 100, 3), dtype=np.uint8))


def test_fingerprint_depends_on_every_value():
    a = [np.zeros((2, 2), np.float32), np.ones(3, np.float32)]
    b = [np.zeros((2, 2), np.float32), np.array([1, 1, 1.0001], np.float32)]
    assert weights_fingerprint(a) == weights_fingerprint(a) != weights_fingerprint(b)


def test_describe_weights():
    assert describe_weights("random") == "random"
    assert describe_weights("/models/vgg16.weights.h5") == "file:vgg16.weights.h5"


def test_weights_file_round_trip(extractor, images, tmp_path):
    """VGG16_WEIGHTS=/path/to/file.h5 loads exactly the saved weights."""
    path = tmp_path / "vgg16.weights.h5"
    extractor._model.save_weights(path)
    from_file = FeatureExtractor(str(path))
    assert from_file.info.fingerprint == extractor.info.fingerprint
    assert from_file.info.weights == "file:vgg16.weights.h5"
    np.testing.assert_allclose(from_file.extract(images)[0], extractor.extract(images)[0], atol=1e-5)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="VGG16_WEIGHTS"):
        FeatureExtractor(str(tmp_path / "nope.h5"))


def test_device_is_the_gpu_when_tensorflow_sees_one(extractor):
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    assert extractor.device.startswith("GPU" if gpus else "CPU")
    assert extractor.jit_compile == (not gpus)
    if gpus:
        assert gpus[0].name in extractor.device


def test_xla_and_graph_give_the_same_vectors(extractor, images):
    """CPU runs XLA, a GPU runs TF's graph: an index built on one must match queries on the other."""
    from tests.support.catalog import TEST_SEED

    other = FeatureExtractor("random", seed=TEST_SEED, jit_compile=not extractor.jit_compile)
    assert other.info.fingerprint == extractor.info.fingerprint
    np.testing.assert_allclose(other.extract(images)[0], extractor.extract(images)[0], atol=1e-5)
