import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { findBinary } from './binaries.js';

export interface ChromiumOptions {
  /** Window size, CSS px. Default 1280 x 900. */
  width?: number;
  height?: number;
  /** Virtual time the page may run (timers, fetches) before the capture, ms. Default 3000. */
  virtualTimeBudgetMs?: number;
  /** Kill chromium after this long, ms. Default 60000. */
  timeoutMs?: number;
}

/** chromium or chromium-browser on PATH, or undefined. */
export function chromiumBinary(): string | undefined {
  return findBinary('chromium') ?? findBinary('chromium-browser');
}

async function runChromium(url: string, mode: string[], opts: ChromiumOptions): Promise<string> {
  const bin = chromiumBinary();
  if (!bin) throw new Error('chromium not found on PATH (apt-get install -y chromium)');
  const profile = await mkdtemp(path.join(os.tmpdir(), 'ftvm-chromium-'));
  try {
    const args = [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-dev-shm-usage', `--user-data-dir=${profile}`,
      `--window-size=${opts.width ?? 1280},${opts.height ?? 900}`,
      `--virtual-time-budget=${opts.virtualTimeBudgetMs ?? 3000}`,
      ...mode, url,
    ];
    return await new Promise<string>((resolve, reject) => {
      execFile(bin, args, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`chromium failed: ${err.message}\n${String(stderr).slice(-2000)}`));
        else resolve(String(stdout));
      });
    });
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

/** Loads `url` in headless chromium, lets its scripts run, and writes a PNG screenshot to `file`. */
export async function screenshotPage(url: string, file: string, opts: ChromiumOptions = {}): Promise<void> {
  await runChromium(url, [`--screenshot=${path.resolve(file)}`], opts);
}

/** Loads `url` in headless chromium, lets its scripts run, and returns the serialized DOM. */
export async function dumpDom(url: string, opts: ChromiumOptions = {}): Promise<string> {
  return runChromium(url, ['--dump-dom'], opts);
}
