#!/bin/bash
# profile ftvm run --guest kv under redis-benchmark SET/GET -c 50
CLI=${CLI:-packages/cli/dist/main.js}
OUT=${OUT:-/tmp/ftvm-prof}
rm -rf $OUT; mkdir -p $OUT
P1=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
node --min-semi-space-size=16 --cpu-prof --cpu-prof-dir=$OUT $CLI run --guest kv --port $P1 >$OUT/ftvm.log 2>&1 & FP=$!
for i in $(seq 100); do redis-cli -p $P1 ping >/dev/null 2>&1 && break; sleep 0.2; done
date +%s.%N > $OUT/t0
sleep 1
t0=$(awk '{print $14+$15}' /proc/$FP/stat)
redis-benchmark -p $P1 -c 50 -n ${N:-200000} -t set,get -q 2>&1 | tr '\r' '\n' | grep -E 'requests per second'
t1=$(awk '{print $14+$15}' /proc/$FP/stat)
echo "cpu us/req=$(( (t1-t0)*10000 / (2*${N:-200000}) ))"
kill -INT $FP; wait $FP
ls -la $OUT
