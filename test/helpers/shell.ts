import { spawnSync } from 'node:child_process';

/** A user's shell environment: without the npm lifecycle variables of the `npm test` running us. */
export function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_(package|lifecycle|config_(workspace|prefix|global))/i.test(k) && k !== 'INIT_CWD'),
  );
  return { ...env, ...extra };
}

/** Runs a bash script (-euo pipefail) to its end; its exit code and output. */
export function sh(script: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 600_000) {
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { cwd, env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  return { code: r.status, out: r.stdout ?? '', err: r.stderr ?? '', error: r.error };
}

export interface CodeBlock {
  lang: string;
  /** Words after the language in the fence's info string. */
  tags: string[];
  text: string;
}

/** The fenced code blocks of a markdown text, in order. */
export function codeBlocks(markdown: string): CodeBlock[] {
  const out: CodeBlock[] = [];
  for (const m of markdown.matchAll(/^```(\S*)([^\n]*)\n([\s\S]*?)^```\s*$/gm)) {
    out.push({ lang: m[1]!, tags: m[2]!.trim().split(/\s+/).filter(Boolean), text: m[3]! });
  }
  return out;
}
