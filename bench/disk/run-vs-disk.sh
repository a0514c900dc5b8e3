#!/bin/sh
# SET/GET throughput of the kv guest with and without a virtual disk: ftvm run (writes go
# through to the file, plus the undo file of local rollback) and ftvm up (FT: the blocks ride
# every checkpoint and the secondary commits them through its journal, fsync per epoch).
# usage: sh bench/disk/run-vs-disk.sh [requests]   (needs redis-benchmark; ~1 min)
N=${1:-20000}
CLI="node $(dirname "$0")/../../packages/cli/dist/main.js"
D=$(mktemp -d)
bench() { redis-benchmark -p "$1" -q -n "$N" -c 16 -t set,get 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | sed 's/^/  /'; }
port=6491
for mode in none disk; do
  args=""; [ $mode = disk ] && args="--disk $D/run.img --disk-size 64M"
  $CLI run --guest kv --port $port $args --log-level error > "$D/log" 2>&1 & pid=$!
  sleep 3; echo "ftvm run, $mode:"; bench $port || tail -3 "$D/log"; kill $pid; wait $pid 2>/dev/null
  port=$((port + 1))
done
for mode in none disk; do
  args=""; [ $mode = disk ] && args="--disk-size 64M"
  $CLI up --guest kv --port $port --node-ports $((port + 1000)),$((port + 1001)) --metrics-port $((port + 3000)) $args --log-level error > "$D/log" 2>&1 & pid=$!
  sleep 10; echo "ftvm up (adaptive), $mode:"; bench $port || tail -3 "$D/log"; kill $pid; wait $pid 2>/dev/null
  port=$((port + 1))
done
rm -rf "$D"
