"""Configuration: defaults, validation errors that name the variable."""

from __future__ import annotations

import pytest

from indexer.config import load_elastic_config, load_indexer_config, parse_mysql_url
from indexer.settings import ConfigError

BASE = {"MYSQL_URL": "mysql://u:p%40ss@db.example:3307/shop"}


def test_defaults():
    config = load_indexer_config(BASE)
    assert config.elastic.url == "http://127.0.0.1:9200"
    assert config.elastic.alias == "images"
    assert config.elastic.vector_index_type == "int8_hnsw"
    assert config.model.weights == "imagenet"
    assert config.mysql.table == "images" and config.mysql.port == 3307
    assert config.mysql.password == "p@ss"
    assert config.keep_versions == 2


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "MYSQL_URL"),
        ({**BASE, "MYSQL_URL": "postgres://x/y"}, "MYSQL_URL"),
        ({**BASE, "MYSQL_URL": "mysql://u:p@host:3306/"}, "MYSQL_URL"),
        ({**BASE, "ES_URL": "ftp://x"}, "ES_URL"),
        ({**BASE, "ES_INDEX": "Images!"}, "ES_INDEX"),
        ({**BASE, "ES_VECTOR_INDEX_TYPE": "lsh"}, "ES_VECTOR_INDEX_TYPE"),
        ({**BASE, "ES_NUMBER_OF_REPLICAS": "-1"}, "ES_NUMBER_OF_REPLICAS"),
        ({**BASE, "IMAGE_FETCH_TIMEOUT": "soon"}, "IMAGE_FETCH_TIMEOUT"),
        ({**BASE, "MYSQL_TABLE": "images; DROP TABLE x"}, "MYSQL_TABLE"),
        ({**BASE, "INDEXER_KEEP_VERSIONS": "0"}, "INDEXER_KEEP_VERSIONS"),
    ],
)
def test_errors_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_indexer_config(env)


def test_mysql_url_default_port():
    assert parse_mysql_url("mysql://a:b@h/db")["port"] == 3306


def test_elastic_config_alone_needs_no_mysql():
    assert load_elastic_config({}).alias == "images"
