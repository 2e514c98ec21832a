// Run by netns.test.ts inside a network namespace: the responder on 127.0.0.1:53 there, with
// the demo names, until SIGTERM. Prints "ready" once it listens.
import { startDnsResponder } from '../../dns/main.ts';
import { createLogger } from '../../shared/log.ts';
import { DEMO_NAMES } from './fixtures.ts';

const r = await startDnsResponder({ host: '127.0.0.1', port: 53, upstreams: [], names: DEMO_NAMES, log: createLogger('dns', 'warn') });
process.stdout.write(`ready ${r.udpPort}\n`);
process.on('SIGTERM', () => {
  r.close().then(() => process.exit(0), () => process.exit(1));
});
