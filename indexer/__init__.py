"""Batch indexer: MySQL catalog rows → VGG16 features → Elasticsearch kNN index."""

# The names below are its public surface, the only ones bench/, demo/ and deploy/ may use.

from indexer.bulk import BULK_CHUNK_BYTES, BULK_CHUNK_DOCS, DEFAULT_BULK_STREAMS, BulkWriter
from indexer.config import IndexerConfig, MySqlConfig, load_indexer_config, load_mysql_config
from indexer.decoding import Decoder, usable_cores
from indexer.full import FullRebuild
from indexer.incremental import IncrementalRun
from indexer.pipeline import RowIndexer, RunOptions
from indexer.report import RunReport
from indexer.source import CatalogSource, connect
from indexer.versions import create_build_index, delete_old_versions, finish_build_index, swap_alias

__all__ = [
    "BULK_CHUNK_BYTES",
    "BULK_CHUNK_DOCS",
    "DEFAULT_BULK_STREAMS",
    "BulkWriter",
    "CatalogSource",
    "Decoder",
    "FullRebuild",
    "IncrementalRun",
    "IndexerConfig",
    "MySqlConfig",
    "RowIndexer",
    "RunOptions",
    "RunReport",
    "connect",
    "create_build_index",
    "delete_old_versions",
    "finish_build_index",
    "load_indexer_config",
    "load_mysql_config",
    "swap_alias",
    "usable_cores",
]
