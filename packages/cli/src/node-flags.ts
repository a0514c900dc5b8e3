/**
 * V8 flags every ftvm role process runs with: the `ftvm` bin's shebang, the children of
 * `ftvm up`, the container entrypoints (deploy/) and the benchmark all use this list (a test
 * keeps the shebang and the entrypoints in step with it).
 *
 * `--min-semi-space-size=16`: the young generation starts at its full 16 MiB instead of
 * growing from 1 MiB. Without it, a primary under load lands, in about half its runs, in a
 * state where V8 starts an incremental mark-compact every ~100 ms that frees almost nothing
 * (35 MB live, old-space limit 59 MB: less headroom than the grown young generation, which is
 * V8's cue to start marking). That costs it 25-40 % of its throughput for the rest of its life.
 * Measured with `--trace-gc` on the benchmark's kv workload: 44-114 major GCs per 12 s run in
 * those runs, 1-2 (start-up) in every run with the flag. Node accepts the flag only on its
 * command line (not in NODE_OPTIONS), hence this list.
 */
export const NODE_FLAGS: readonly string[] = Object.freeze(['--min-semi-space-size=16']);
