-- wrk prints 50/75/90/99% only; its own latency histogram also answers p99.9.
-- One machine-readable line, in microseconds, read by bench/lib/clients.mjs.
done = function(summary, latency, requests)
  io.write(string.format("FTVM_BENCH p50_us=%d p99_us=%d p999_us=%d max_us=%d requests=%d errors=%d\n",
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
