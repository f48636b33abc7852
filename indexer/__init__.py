"""Batch indexer: MySQL catalog rows → VGG16 features → Elasticsearch kNN index."""
