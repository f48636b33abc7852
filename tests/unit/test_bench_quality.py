"""bench.quality's pure parts: tiles, second views, query edits, ranks and accuracy (no services)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench import corpus, quality
from bench.quality import (
    EDITS,
    Edit,
    QueryResult,
    accuracy,
    crop_box,
    inner_scale,
    make_queries,
    perspective_coefficients,
    product_ranking,
    rank_of,
    select_edits,
    summarise,
    tile_boxes,
)


def photo(size=(320, 240)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


EXPECTED_SIZE = {
    "identity": (320, 240),
    "crop_center_80": (256, 192),
    "crop_center_60": (192, 144),
    "crop_corner_70": (224, 168),
    "scale_0.5": (160, 120),
    "scale_0.25": (80, 60),
    "scale_2": (640, 480),
    "jpeg_q30": (320, 240),
    "jpeg_q10": (320, 240),
    "brightness_+40": (320, 240),
    "brightness_-40": (320, 240),
    "saturation_x2": (320, 240),
    "grayscale": (320, 240),
    "hue_+45": (320, 240),
    "flip_h": (320, 240),
    "rotate_90": (240, 320),
    "pad_square": (384, 384),
    "text_overlay": (320, 240),
}


def test_every_edit_has_an_expected_size() -> None:
    assert set(EXPECTED_SIZE) | {"rotate_10"} == {edit.name for edit in EDITS}


@pytest.mark.parametrize("edit", EDITS, ids=lambda edit: edit.name)
def test_edits_give_images_of_the_expected_size_and_mode(edit: Edit) -> None:
    edited = edit.apply(photo())
    assert edited.mode == ("L" if edit.name == "grayscale" else "RGB")
    if edit.name == "rotate_10":
        scale = inner_scale((320, 240), 10)
        assert edited.size == (round(320 * scale), round(240 * scale))
    else:
        assert edited.size == EXPECTED_SIZE[edit.name]


def test_queries_are_jpegs_and_identity_is_the_catalog_file_itself() -> None:
    original = jpeg(photo())
    queries = make_queries([original, original], list(EDITS))
    assert len(queries) == 2 * len(EDITS)
    assert [q.product for q in queries[: len(EDITS)]] == [0] * len(EDITS)
    by_name = {q.edit.name: q for q in queries[: len(EDITS)]}
    assert by_name["identity"].data == original
    for query in queries:
        with Image.open(io.BytesIO(query.data)) as image:
            assert image.format == "JPEG"
    assert len(by_name["jpeg_q10"].data) < len(by_name["jpeg_q30"].data) < len(original)


def test_edits_change_what_they_claim() -> None:
    image = photo()
    pixels = np.asarray(image)
    edit = {edit.name: edit for edit in EDITS}
    flipped = np.asarray(edit["flip_h"].apply(image))
    assert np.array_equal(flipped, pixels[:, ::-1])
    brighter = np.asarray(edit["brightness_+40"].apply(image), dtype=float)
    assert brighter.mean() > pixels.mean()
    padded = np.asarray(quality.pad_square(image))
    assert (padded[0, 0] == 255).all() and (padded[-1, -1] == 255).all()
    gray = Image.new("RGB", (10, 10), (120, 120, 120))
    assert np.asarray(quality.shift_hue(gray, 45)).max() - np.asarray(gray).max() <= 1
    red = Image.new("RGB", (10, 10), (200, 30, 30))
    shifted = np.asarray(quality.shift_hue(red, 120))[0, 0]
    assert shifted[1] > shifted[0]  # red turned green


def test_crop_box() -> None:
    assert crop_box((100, 50), 0.8, (0.5, 0.5)) == (10, 5, 90, 45)
    assert crop_box((100, 50), 0.7, (0, 0)) == (0, 0, 70, 35)
    assert crop_box((100, 50), 0.5, (1, 1)) == (50, 25, 100, 50)


def test_inner_scale_fits_the_rotated_box() -> None:
    assert inner_scale((100, 100), 0) == pytest.approx(1.0)
    assert inner_scale((100, 100), 90) == pytest.approx(1.0)
    assert inner_scale((100, 100), 45) == pytest.approx(1 / np.sqrt(2))
    assert 0.7 < inner_scale((320, 240), 10) < 0.9


def test_tiles_cover_the_photo_without_overlap() -> None:
    boxes = tile_boxes((1000, 872), (4, 3))
    assert len(boxes) == 12
    assert boxes[0] == (0, 0, 250, 290) and boxes[-1] == (750, 581, 1000, 872)
    assert sum((r - left) * (b - t) for left, t, r, b in boxes) == 1000 * 872
    assert tile_boxes((451, 300), (1, 1)) == [(0, 0, 451, 300)]


def test_perspective_coefficients() -> None:
    corners = [(0, 0), (100, 0), (100, 80), (0, 80)]
    assert perspective_coefficients(corners, corners) == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0), abs=1e-9)
    shifted = [(x + 5, y + 3) for x, y in corners]
    assert perspective_coefficients(corners, shifted) == pytest.approx((1, 0, 5, 0, 1, 3, 0, 0), abs=1e-9)


def test_second_view_is_another_shot_without_fill() -> None:
    image = Image.new("RGB", (200, 100), (10, 200, 30))
    shot, how = quality.second_view(image, np.random.default_rng(1))
    assert shot.size in ((150, 75), (260, 130)) and "perspective" in how
    inner = np.asarray(shot)[2:-2, 2:-2].astype(int)
    assert np.abs(inner - (10, 200, 30)).max() <= 3  # corners moved inwards: no black fill


def test_padded_batch_has_one_shape() -> None:
    images = [np.full((224, 224, 3), 7, np.uint8)] * 3
    batch = corpus.padded_batch(images, 8)
    assert batch.shape == (8, 224, 224, 3)
    assert (batch[:3] == 7).all() and (batch[3:] == 0).all()


def test_rank_of_and_accuracy() -> None:
    assert rank_of("b", ["a", "b", "c"]) == 2
    assert rank_of("z", ["a", "b"]) is None
    ranks = [1, 1, 3, 6, None]
    assert accuracy(ranks, 1) == pytest.approx(0.4)
    assert accuracy(ranks, 5) == pytest.approx(0.6)
    assert accuracy([], 1) is None


def test_product_ranking_scores_a_product_by_its_best_image() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.4, 0.95, 0.0])
    image_products = np.array([0, 0, 1, 1, 2, 2])
    assert product_ranking(scores, image_products, 3).tolist() == [2, 0, 1]
    tied = product_ranking(np.array([0.5, 0.5]), np.array([0, 1]), 2)
    assert tied.tolist() == [0, 1]


def result(product: str, edit: str, api_top: list[str], baseline_top: list[str]) -> QueryResult:
    family = {"identity": "control", "flip_h": "geometric"}[edit]
    return QueryResult(
        product,
        product.split("-")[1],
        edit,
        family,
        100,
        api_rank=rank_of(product, api_top),
        api_top=api_top,
        api_status=200,
        baseline_rank=rank_of(product, baseline_top),
        baseline_top=baseline_top,
    )


def test_summarise_per_edit_family_and_overall() -> None:
    sources = {"p1-cat": "cat", "p2-cat": "cat", "p3-dog": "dog"}
    results = [
        result("p1-cat", "identity", ["p1-cat", "p2-cat"], ["p1-cat", "p2-cat"]),
        result("p1-cat", "flip_h", ["p2-cat", "p1-cat"], ["p1-cat", "p2-cat"]),
        result("p3-dog", "flip_h", ["p1-cat", "p2-cat"], ["p1-cat", "p2-cat"]),
        result("p2-cat", "flip_h", ["p2-cat"], ["p2-cat"]),
    ]
    summary = summarise(results, select_edits(["identity", "flip_h"]), sources)
    identity, flip = summary["by_edit"]
    assert (identity["queries"], identity["api_top1"], identity["api_top5"]) == (1, 1.0, 1.0)
    assert flip["queries"] == 3
    assert flip["api_top1"] == pytest.approx(1 / 3)
    assert flip["api_top5"] == pytest.approx(2 / 3)
    assert flip["baseline_top1"] == pytest.approx(2 / 3)
    assert flip["top1_differs"] == 1
    assert (flip["misses_to_same_photo"], flip["api_misses"]) == (1, 2)
    assert [row["edit"] for row in summary["by_family"]] == ["control", "geometric"]
    assert summary["overall"]["queries"] == 3  # identity is the control, not in the overall row
    assert summary["overall"]["api_top1"] == flip["api_top1"]


def test_agreement_compares_ranks_as_the_api_can_show_them() -> None:
    results = [
        result("p1-cat", "flip_h", ["p2-cat", "p1-cat"], ["p1-cat", "p2-cat"]),
        result("p3-dog", "flip_h", ["p1-cat"], ["p1-cat"]),
    ]
    results[1].baseline_rank = quality.PAGE_SIZE + 3  # beyond the API's page: not a disagreement
    results[0].score_gap, results[1].score_gap = -0.0002, 0.0001
    agree = quality.agreement(results)
    assert (agree["top1_differs"], agree["top5_hit_differs"], agree["rank_differs"]) == (1, 0, 1)
    assert agree["score_gap_max"] == pytest.approx(0.0002)


def test_select_edits_keeps_the_table_order_and_rejects_unknown_names() -> None:
    assert [e.name for e in select_edits(["flip_h", "identity"])] == ["identity", "flip_h"]
    with pytest.raises(SystemExit, match="unknown edit"):
        select_edits(["sharpen"])


def test_imagenet_weights_need_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(quality, "Path", _only_under(tmp_path))
    with pytest.raises(SystemExit, match="cannot be downloaded"):
        quality.check_weights("imagenet")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / quality.IMAGENET_FILE).write_bytes(b"h5")
    quality.check_weights("imagenet")
    quality.check_weights("random")
    with pytest.raises(SystemExit, match="no such file"):
        quality.check_weights(str(tmp_path / "missing.h5"))


def _only_under(root):
    """Path that sees only files under `root`, so a real ~/.keras or /tmp/.keras cannot interfere."""
    from pathlib import Path

    class Scoped(type(Path())):
        def is_file(self) -> bool:
            return str(self).startswith(str(root)) and super().is_file()

    return Scoped
