// Socket errors can repeat once per packet (a firewall rejecting every send); one line per
// interval with the count in between keeps the log readable and cheap.
import type { Logger } from '../shared/log.ts';

export function throttledWarn(log: Logger, msg: string, intervalMs = 10_000): (err: Error) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (err: Error) => {
    const now = performance.now();
    if (now - last < intervalMs) {
      suppressed++;
      return;
    }
    last = now;
    log.warn({ error: err.message, suppressed }, msg);
    suppressed = 0;
  };
}
