"""Integration fixtures: a catalog environment whose photos are served by the local image server."""

from __future__ import annotations

import pytest


@pytest.fixture
def env(catalog_env, image_server) -> dict[str, str]:
    """catalog_env with IMAGE_BASE_URL pointing at the real local HTTP image server."""
    return {**catalog_env, "IMAGE_BASE_URL": image_server}
