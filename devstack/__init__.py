"""The local stack (Elasticsearch nodes and clusters, MariaDB) and the kit that tests, bench and demo share."""
