"""Integration fixtures: a catalog environment whose photos are served by the local image server."""

from __future__ import annotations

import pytest


@pytest.fixture
def env(catalog_env, image_server) -> dict[str, str]:
    """catalog_env with IMAGE_BASE_URL pointing at the real local HTTP image server."""
    return {**catalog_env, "IMAGE_BASE_URL": image_server}


@pytest.fixture(params=["float32", "bfloat16"])
def precision(request) -> str:
    """A test that takes this runs twice: in float32 and in bfloat16 (VGG16_PRECISION)."""
    return request.param


@pytest.fixture
def extractor_per_precision(precision, extractor_in):
    """The session's model in `precision`: modules that must hold in both override `extractor` with it."""
    return extractor_in(precision)
