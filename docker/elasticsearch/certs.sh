#!/bin/bash
# One-shot (compose service es-certs, in the Elasticsearch image, as root): a CA and a certificate for
# the node, in the `certs` volume at /usr/share/elasticsearch/config/certs. Kept when they already exist.
#   ca/ca.crt                   public: Kibana, the indexer and the API trust it (ES_CA_CERTS)
#   ca/ca.key, elasticsearch/*  private to uid 1000 / gid 0 (the Elasticsearch and Kibana images' user)
set -euo pipefail
cd /usr/share/elasticsearch
certs=config/certs

if [ -f "$certs/elasticsearch/elasticsearch.crt" ]; then
    echo "es-certs: certificates already present in $certs"
    exit 0
fi
if [ ! -f "$certs/ca.zip" ]; then
    bin/elasticsearch-certutil ca --silent --pem --out "$certs/ca.zip"
fi
unzip -o -q "$certs/ca.zip" -d "$certs"
cat > "$certs/instances.yml" <<'YAML'
instances:
  - name: elasticsearch
    dns: [elasticsearch, localhost]
    ip: [127.0.0.1]
YAML
bin/elasticsearch-certutil cert --silent --pem --out "$certs/certs.zip" --in "$certs/instances.yml" \
    --ca-cert "$certs/ca/ca.crt" --ca-key "$certs/ca/ca.key"
unzip -o -q "$certs/certs.zip" -d "$certs"
rm -f "$certs/ca.zip" "$certs/certs.zip" "$certs/instances.yml"

chown -R root:root "$certs"
find "$certs" -type d -exec chmod 0755 {} +
find "$certs" -type f -name '*.crt' -exec chmod 0644 {} +
find "$certs" -type f -name '*.key' -exec chmod 0640 {} +
echo "es-certs: CA and node certificate written to $certs"
