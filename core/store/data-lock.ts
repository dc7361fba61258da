/**
 * One writer per data dir: import, capture and reindex take `<dataDir>/lock` (created
 * exclusively, holding the writer's PID and command). Read-only commands never take it
 * and never run crash recovery, so `camtap streams` beside a running capture is safe.
 * A lock whose PID is gone (kill -9) is stale and taken over.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { CamtapError } from '../errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function lockDataDir(dir: string, command: string): () => void {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, JSON.stringify({ pid: process.pid, command, since: new Date().toISOString() }));
      closeSync(fd);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        rmSync(file, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new CamtapError('CAMTAP_ERR_STORE_IO', { file, reason: (e as Error).message });
      let holder: { pid?: number; command?: string } = {};
      try {
        holder = JSON.parse(readFileSync(file, 'utf8')) as typeof holder;
      } catch {
        // A lock file cut short by a crash while it was written: stale.
      }
      if (holder.pid && holder.pid !== process.pid && alive(holder.pid)) {
        throw new CamtapError('CAMTAP_ERR_DATA_LOCKED', { dir, pid: holder.pid, command: holder.command ?? '?' });
      }
      rmSync(file, { force: true });
    }
  }
  throw new CamtapError('CAMTAP_ERR_STORE_IO', { file, reason: 'cannot take the data dir lock' });
}
