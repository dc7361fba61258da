import { pino } from 'pino';
import type { Logger } from './contracts/logger.js';

/**
 * Structured JSON logs on stderr (stdout is for command output: tables, `--json`, pcap
 * streams). `CAMTAP_LOG_LEVEL` overrides the configured level.
 */
export function createLogger(level: string = 'info'): Logger {
  return pino(
    {
      level: process.env.CAMTAP_LOG_LEVEL ?? level,
      base: { app: 'camtap' },
      redact: { paths: ['*.password', '*.authorization', '*.Authorization'], censor: '<redacted>' },
    },
    pino.destination({ fd: 2, sync: true }),
  ) as unknown as Logger;
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
