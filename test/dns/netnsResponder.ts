// Run by netns.test.ts inside a network namespace: the responder on 127.0.0.1:53 there (or the
// HOST PORT given), with the demo names, until SIGTERM. Prints "ready PORT" once it listens.
//   node test/dns/netnsResponder.ts [HOST PORT]
import { startDnsResponder } from '../../dns/main.ts';
import { createLogger } from '../../shared/log.ts';
import { DEMO_NAMES } from './fixtures.ts';

const [host = '127.0.0.1', port = '53'] = process.argv.slice(2);
const r = await startDnsResponder({ host, port: Number(port), upstreams: [], names: DEMO_NAMES, log: createLogger('dns', 'warn') });
process.stdout.write(`ready ${r.udpPort}\n`);
process.on('SIGTERM', () => {
  r.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
