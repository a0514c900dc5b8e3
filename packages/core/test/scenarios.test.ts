import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runScript } from './sim/script.js';

const dir = join(import.meta.dirname, 'testdata');

describe('scenario scripts (test/testdata/*.txt)', () => {
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.txt')).sort()) {
    it(`runs ${f} with every expectation met`, () => {
      const { failures, cluster } = runScript(readFileSync(join(dir, f), 'utf8'));
      if (failures.length > 0) console.log(cluster.events.join('\n'));
      expect(failures).toEqual([]);
    });
  }
});
