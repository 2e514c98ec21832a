// Runs the sidecar as its own process for lifecycle tests (SIGTERM, restart from the state file):
// options as JSON in argv[2]; prints {"adminPort":N} once started; SIGTERM drains, then exits 0.
import { createLogger } from '../../shared/log.ts';
import { startProxy, type ProxyOptions } from '../../proxy/main.ts';

const opts = JSON.parse(process.argv[2]) as ProxyOptions;
const proxy = await startProxy({ ...opts, log: createLogger('proxy', process.env.SHOAL_TEST_LOG ?? 'silent') });
process.on('SIGTERM', () => {
  proxy.drain().then(() => proxy.close()).then(() => process.exit(0), (err: Error) => {
    process.stderr.write(`close failed: ${err.message}\n`);
    process.exit(1);
  });
});
await proxy.whenReady();
process.stdout.write(`${JSON.stringify({ adminPort: proxy.adminPort, version: proxy.version })}\n`);
