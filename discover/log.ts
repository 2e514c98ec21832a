// discover's logger: pino, in the format every piece writes (shared/log.ts). discover runs once per
// cluster and logs bursts (a watch relist, an admission storm), which pino's buffered writer handles;
// the sidecar uses the smaller writer in shared/log.ts.
import { pino } from 'pino';
import type { Logger } from '../shared/log.ts';

export function createDiscoverLogger(level: string = process.env.SHOAL_LOG_LEVEL ?? 'info', piece = 'discover'): Logger {
  return pino({ name: `shoal-${piece}`, level, base: { piece } });
}
