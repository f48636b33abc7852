"""VGG16 extractor: unit vectors, determinism, batch independence, weights from a file."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.features import FeatureExtractor, describe_weights, weights_fingerprint


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


def test_the_machine_chooses_precision_and_compile_mode(extractor):
    """`auto` follows this machine's hardware, as imgsearch.compute's rules say."""
    from imgsearch.compute import plan_compute, read_cpu_facts
    from imgsearch.features import gpu_facts, visible_gpus

    gpus = gpu_facts(visible_gpus())
    assert extractor.compute == plan_compute("auto", "auto", read_cpu_facts(), gpus)
    assert extractor.device.startswith("GPU" if gpus else "CPU")
    assert extractor.compute.precision in extractor.device and extractor.compute.compile in extractor.device


def test_xla_and_graph_give_the_same_vectors(images):
    """float32 runs XLA on AVX2 CPUs and TF's graph elsewhere: an index built on one matches queries on
    the other."""
    from devstack.kit.catalog import TEST_SEED

    graph, xla = (
        FeatureExtractor("random", seed=TEST_SEED, precision="float32", compile_mode=mode)
        for mode in ("graph", "xla")
    )
    assert (graph.compute.compile, xla.compute.compile) == ("graph", "xla")
    assert xla.info.fingerprint == graph.info.fingerprint
    np.testing.assert_allclose(xla.extract(images)[0], graph.extract(images)[0], atol=1e-5)


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Real photographs (scikit-image samples, 6 products x 2 views) decoded as the indexer does."""
    import io

    from demo.catalog import PHOTOS, sample_photo
    from imgsearch.imaging import decode_image

    decoded = []
    for name in PHOTOS[:6]:
        for size in ((640, 480), (300, 400)):
            buffer = io.BytesIO()
            sample_photo(name).resize(size).save(buffer, "JPEG", quality=90)
            decoded.append(decode_image(buffer.getvalue()))
    return np.stack(decoded)


def test_bfloat16_and_float32_vectors_agree(extractor_in, photos):
    """Same weights in both precisions: the same fingerprint, float32 unit vectors at cosine >= 0.9999."""
    float32, bfloat16 = extractor_in("float32"), extractor_in("bfloat16")
    assert (float32.compute.precision, bfloat16.compute.precision) == ("float32", "bfloat16")
    assert float32.info.fingerprint == bfloat16.info.fingerprint
    exact, _ = float32.extract(photos)
    rounded, _ = bfloat16.extract(photos)
    assert rounded.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rounded, axis=1), 1.0, atol=1e-5)
    cosines = (exact * rounded).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
    assert not np.array_equal(exact, rounded)  # bf16 really ran: its rounding shows in the last digits


def test_each_precision_finds_the_same_nearest_photo(extractor_in, photos):
    """Ranking survives the precision change: every photo's nearest other photo is the same in both."""
    nearest = []
    for precision in ("float32", "bfloat16"):
        vectors, _ = extractor_in(precision).extract(photos)
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -1.0)
        nearest.append(similarity.argmax(axis=1))
    np.testing.assert_array_equal(nearest[0], nearest[1])
