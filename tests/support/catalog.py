"""The environment of an indexer/API run against a throwaway table and alias."""

from __future__ import annotations

import uuid

TEST_SEED = 1234


def catalog_environment(es_url: str, mysql_url: str, alias: str, report_dir: str) -> dict[str, str]:
    """Variables for a run on a fresh `images_<random>` table, random seeded weights, no replicas."""
    return {
        "ES_URL": es_url,
        "ES_INDEX": alias,
        "ES_NUMBER_OF_REPLICAS": "0",
        "MYSQL_URL": mysql_url,
        "MYSQL_TABLE": f"images_{uuid.uuid4().hex[:10]}",
        "VGG16_WEIGHTS": "random",
        "VGG16_SEED": str(TEST_SEED),
        "INDEXER_REPORT_DIR": report_dir,
        "INDEXER_CHANGE_LAG_SECONDS": "1",
        "INDEXER_CHECKPOINT_SECONDS": "1",
    }
