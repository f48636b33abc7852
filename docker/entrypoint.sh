#!/bin/sh
# Entry point of the imgsearch image.
#   api [GUNICORN OPTIONS]   the search API: gunicorn -c searchapi/gunicorn.conf.py 'searchapi:create_app()'
#   indexer ARGS             python -m indexer ARGS (full, incremental, status, rollback, --help)
#   demo ARGS                python -m demo ARGS (demo catalog + indexer run; docker/compose.yaml)
#   kibana-setup ARGS        python -m kibana.setup ARGS (import the Kibana saved objects)
#   anything else            executed as given (python -m indexer ..., sh, ...)
# Before that:
#   - IMGSEARCH_ENV_FILE: a file of NAME=value lines (and # comments), such as the indexer.env / api.env
#     that `python -m deploy.elasticsearch.security setup --output-dir` writes; variables already set win.
#   - X_FILE -> X for secrets mounted as files (ES_API_KEY, ES_PASSWORD, SEARCH_API_KEYS, MYSQL_URL,
#     KIBANA_API_KEY, KIBANA_PASSWORD); a non-empty X wins over X_FILE.
#   - VGG16_WEIGHTS unset or `imagenet` -> the copy baked into the image (the same file Keras would
#     download: same fingerprint), so nothing is downloaded at start.
set -eu

fail() {
    echo "entrypoint: $*" >&2
    exit 2
}

load_env_file() {
    env_file=${IMGSEARCH_ENV_FILE:-}
    if [ -z "$env_file" ]; then
        return 0
    fi
    [ -r "$env_file" ] || fail "IMGSEARCH_ENV_FILE=$env_file is not a readable file"
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            '' | '#'*) continue ;;
        esac
        name=${line%%=*}
        value=${line#*=}
        case "$name" in
            '' | [0-9]* | *[!A-Za-z0-9_]*) fail "$env_file: not a NAME=value line: ${name%%[!A-Za-z0-9_]*}..." ;;
        esac
        [ "$name" != "$line" ] || fail "$env_file: not a NAME=value line: $name"
        eval "current=\${${name}:-}"
        if [ -z "$current" ]; then
            export "$name=$value"
        fi
    done < "$env_file"
}

load_file_vars() {
    for name in ES_API_KEY ES_PASSWORD SEARCH_API_KEYS MYSQL_URL KIBANA_API_KEY KIBANA_PASSWORD; do
        eval "file=\${${name}_FILE:-}"
        eval "value=\${${name}:-}"
        if [ -n "$file" ] && [ -z "$value" ]; then
            [ -r "$file" ] || fail "${name}_FILE=$file is not a readable file"
            value=$(cat "$file")
            export "$name=$value"
        fi
    done
}

use_baked_weights() {
    baked=${IMGSEARCH_BAKED_WEIGHTS:-/opt/imgsearch/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5}
    case "${VGG16_WEIGHTS:-imagenet}" in
        imagenet)
            if [ -f "$baked" ]; then
                export VGG16_WEIGHTS="$baked"
            fi
            ;;
    esac
}

load_env_file
load_file_vars
use_baked_weights

command=${1:-api}
if [ $# -gt 0 ]; then
    shift
fi
case "$command" in
    api) exec gunicorn -c searchapi/gunicorn.conf.py "$@" 'searchapi:create_app()' ;;
    indexer) exec python -m indexer "$@" ;;
    demo) exec python -m demo "$@" ;;
    kibana-setup) exec python -m kibana.setup "$@" ;;
    *) exec "$command" "$@" ;;
esac
