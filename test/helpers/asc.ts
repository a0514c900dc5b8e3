import { mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, relative } from 'node:path';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Compiles a test guest (test/fixtures/guests/<name>.ts) with the flags the shipped
 * guests are built with; returns the .wasm path.
 */
export async function compileFixtureGuest(name: string): Promise<string> {
  const { ASC_FLAGS } = (await import(join(root, 'packages/guests/scripts/asc-flags.mjs'))) as { ASC_FLAGS: string[] };
  const { default: asc } = (await import('assemblyscript/asc')) as unknown as { default: { main: (a: string[], o: object) => Promise<{ error: Error | null }> } };
  const out = join(root, 'test/fixtures/build', `${name}.wasm`);
  mkdirSync(dirname(out), { recursive: true });
  let text = '';
  const sink = { write: (s: string) => ((text += s), true) };
  const { error } = await asc.main([`test/fixtures/guests/${name}.ts`, ...ASC_FLAGS, '-o', relative(root, out)], {
    stdout: sink,
    stderr: sink,
    baseDir: root,
  });
  if (error) throw new Error(`compiling ${name}: ${error.message}\n${text}`);
  readFileSync(out);
  return out;
}
