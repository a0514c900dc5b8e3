#!/usr/bin/env bash
# Prints the path of a Node.js binary of one major version (default 24, the LTS the image ships and
# CI tests), from the npm `node` package: nothing is fetched from outside the npm registry. It is
# installed once into ${FTVM_NODE_CACHE:-$HOME/.cache/ftvm/node}/<major> and reused after.
#
#   deploy/node-lts.sh [major]
#   PATH="$(dirname "$(deploy/node-lts.sh)"):$PATH" npm install   # then npm, npm test... run on it
set -euo pipefail
MAJOR="${1:-24}"
DIR="${FTVM_NODE_CACHE:-$HOME/.cache/ftvm/node}/$MAJOR"
BIN="$DIR/node_modules/node/bin/node"
case "$("$BIN" --version 2>/dev/null || true)" in
  "v$MAJOR".*) ;;
  *)
    mkdir -p "$DIR"
    [ -f "$DIR/package.json" ] || echo '{ "private": true }' > "$DIR/package.json"
    (cd "$DIR" && npm install --no-audit --no-fund --no-save "node@$MAJOR" >&2)
    ;;
esac
readlink -f "$BIN"
