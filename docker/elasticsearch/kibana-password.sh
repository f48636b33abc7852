#!/bin/bash
# One-shot (compose service es-setup, in the Elasticsearch image): waits for Elasticsearch, then sets
# the password of the built-in kibana_system user, which Kibana uses to connect
# (POST /_security/user/kibana_system/_password, authenticated as `elastic`). Idempotent.
set -euo pipefail

: "${ELASTIC_PASSWORD:?set ELASTIC_PASSWORD}"
: "${KIBANA_SYSTEM_PASSWORD:?set KIBANA_SYSTEM_PASSWORD}"
ES_URL=${ES_URL:-https://elasticsearch:9200}
CA=${ES_CA_CERTS:-/usr/share/elasticsearch/config/certs/ca/ca.crt}

es() {  # es METHOD PATH [JSON]: prints the body; fails with the body on HTTP >= 400
    local method=$1 path=$2 body=${3:-}
    local args=(--silent --show-error --cacert "$CA" -u "elastic:${ELASTIC_PASSWORD}" -X "$method"
        -H 'Content-Type: application/json' --write-out '\n%{http_code}')
    if [ -n "$body" ]; then args+=(--data-binary "$body"); fi
    local out code
    out=$(curl "${args[@]}" "${ES_URL}${path}")
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "$code" -ge 400 ]; then
        echo "es-setup: $method $path -> HTTP $code: $out" >&2
        return 1
    fi
    printf '%s' "$out"
}

echo "es-setup: waiting for Elasticsearch at ${ES_URL}"
for _ in $(seq 1 120); do
    if es GET '/_cluster/health?wait_for_status=yellow&timeout=5s' >/dev/null 2>&1; then break; fi
    sleep 2
done
es GET '/_cluster/health?wait_for_status=yellow&timeout=5s' >/dev/null
es POST /_security/user/kibana_system/_password "{\"password\": \"${KIBANA_SYSTEM_PASSWORD}\"}" >/dev/null
echo "es-setup: kibana_system password set"
