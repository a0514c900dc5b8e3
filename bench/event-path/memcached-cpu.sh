#!/bin/bash
# CPU per op of ftvm run --guest memcached, --vcpu inline vs worker: memcaslap -T 1 -c 16 for 5 s,
# 3 interleaved rounds; server CPU = utime+stime (all threads) from /proc/<pid>/stat over the run / ops.
# Usage: npm run build && bench/event-path/memcached-cpu.sh
cd "$(dirname "$0")/../.."
for round in 1 2 3; do
for mode in inline worker; do
  P=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  node --min-semi-space-size=16 packages/cli/dist/main.js run --guest memcached --port $P --vcpu $mode >/dev/null 2>&1 & FP=$!
  for i in $(seq 100); do python3 -c "import socket;socket.create_connection((\"127.0.0.1\",$P),1)" 2>/dev/null && break; sleep 0.2; done; sleep 0.3
  t0=$(awk '{print $14+$15}' /proc/$FP/stat)
  out=$(memcaslap -s 127.0.0.1:$P -T 1 -c 16 -t 5s -X 100 2>&1 | grep -o "Ops: [0-9]* TPS: [0-9]*")
  t1=$(awk '{print $14+$15}' /proc/$FP/stat)
  ops=$(echo $out | awk '{print $2}')
  echo "round $round $mode $out cpu_us_per_op=$(python3 -c "print(round(($t1-$t0)*10000/$ops,1))")"
  kill -INT $FP; wait $FP 2>/dev/null
done; done
