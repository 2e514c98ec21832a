// Runs the sidecar as its own process for lifecycle tests (SIGTERM, restart from the state file):
// options as JSON in argv[2]; prints {"adminPort":N} once started; SIGTERM drains, then exits 0;
// SIGUSR2 prints which of Node's heavier built-in modules it has loaded so far ({"builtins":[...]}).
import { createLogger } from '../../shared/log.ts';
import { startProxy, type ProxyOptions } from '../../proxy/main.ts';

const opts = JSON.parse(process.argv[2]) as ProxyOptions;
const proxy = await startProxy({ ...opts, log: createLogger('proxy', process.env.SHOAL_TEST_LOG ?? 'silent') });
process.on('SIGUSR2', () => {
  const heavy = ['tls', 'http2', 'zlib'];
  const list = (process as unknown as { moduleLoadList: string[] }).moduleLoadList;
  const loaded = heavy.filter((m) => list.includes(`NativeModule ${m}`));
  process.stdout.write(`${JSON.stringify({ builtins: loaded })}\n`);
});
process.on('SIGTERM', () => {
  proxy
    .drain()
    .then(() => proxy.close())
    .then(
      () => process.exit(0),
      (err: Error) => {
        process.stderr.write(`close failed: ${err.message}\n`);
        process.exit(1);
      },
    );
});
await proxy.whenReady();
process.stdout.write(`${JSON.stringify({ adminPort: proxy.adminPort, version: proxy.version })}\n`);
