#!/bin/bash
CLI=${CLI:-packages/cli/dist/main.js}
OUT=${OUT:-/tmp/ftvm-perf}
mkdir -p $OUT
P1=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
node --min-semi-space-size=16 --perf-basic-prof $CLI run --guest kv --port $P1 >$OUT/ftvm.log 2>&1 & FP=$!
for i in $(seq 100); do redis-cli -p $P1 ping >/dev/null 2>&1 && break; sleep 0.2; done
sleep 1
redis-benchmark -p $P1 -c 50 -n ${N:-300000} -t set,get -q >/dev/null 2>&1 & BP=$!
sleep 2
perf record -F 2000 -g -p $FP -o $OUT/perf.data -- sleep ${S:-8} 2>&1 | tail -2
wait $BP
kill $FP; wait $FP
