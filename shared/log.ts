// One logger setup for every piece: pino, JSON lines to stdout.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(piece: string, level: string = process.env.SHOAL_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: `shoal-${piece}`, level, base: { piece } });
}
