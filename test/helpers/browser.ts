/**
 * Debian's chromium driven by playwright-core, for the console's end-to-end test.
 * Headless, no sandbox (tests run as root in containers), autoplay without a gesture
 * (the player starts muted video by itself, as a user's click would let it).
 *
 * The browser is closed at teardown, and killed by its PID should closing hang.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CAMTAP_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or false. */
export function chromiumMissing(): string | false {
  try {
    accessSync(CHROMIUM, constants.X_OK);
    return false;
  } catch {
    return `${CHROMIUM} is not installed (Debian: apt install chromium)`;
  }
}

/** PIDs of this process's children whose command name matches. */
function childPids(name: RegExp): number[] {
  const r = spawnSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return (r.stdout ?? '')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 2 && name.test(f[1]!))
    .map((f) => Number(f[0]));
}

export async function launchChromium(t: { teardown(fn: () => unknown): void }): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'] });
  // playwright starts chromium as a child of this process: its PIDs, for the teardown's last resort.
  const pids = childPids(/chrom/i);
  t.teardown(async () => {
    const closed = browser.close().then(() => true);
    const timer = new Promise<false>((r) => setTimeout(() => r(false), 10_000).unref());
    if (await Promise.race([closed, timer])) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
  return browser;
}

/** What a decoded frame looks like: its size and the spread of its pixel values. */
export interface FrameStats {
  width: number;
  height: number;
  /** Mean and variance of the luma (0.299 R + 0.587 G + 0.114 B) over all pixels. */
  mean: number;
  variance: number;
  /** Distinct colours among a sample of pixels (a blank frame has one). */
  distinct: number;
  currentTime: number;
}

/** Draws the video element's current frame to a canvas in the page and measures it. */
export function frameStats(page: Page, selector = 'video'): Promise<FrameStats | null> {
  return page.evaluate((sel) => {
    const v = document.querySelector(sel) as HTMLVideoElement | null;
    if (!v || v.videoWidth === 0 || v.videoHeight === 0) return null;
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    const g = c.getContext('2d', { willReadFrequently: true })!;
    g.drawImage(v, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    let sum2 = 0;
    const colours = new Set<number>();
    const n = d.length / 4;
    for (let i = 0; i < d.length; i += 4) {
      const y = 0.299 * d[i]! + 0.587 * d[i + 1]! + 0.114 * d[i + 2]!;
      sum += y;
      sum2 += y * y;
      if ((i / 4) % 97 === 0) colours.add((d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!);
    }
    const mean = sum / n;
    return { width: c.width, height: c.height, mean, variance: sum2 / n - mean * mean, distinct: colours.size, currentTime: v.currentTime };
  }, selector);
}
