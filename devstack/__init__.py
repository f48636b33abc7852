"""The local stack (Elasticsearch nodes and clusters, MariaDB) and the kit tests, bench and demo share."""
