// The sidecar under test, from the built JavaScript (plain .mjs so no type stripper is loaded into the
// measured process). argv[2]: ProxyOptions as JSON. Prints {"adminPort":N} when ready.
import { createLogger } from '../../dist/shared/log.js';
import { startProxy } from '../../dist/proxy/main.js';

const opts = JSON.parse(process.argv[2]);
const proxy = await startProxy({ ...opts, log: createLogger('proxy', 'warn') });
await proxy.whenReady();
process.stdout.write(`${JSON.stringify({ adminPort: proxy.adminPort, pid: process.pid })}\n`);
process.on('SIGTERM', () => proxy.close().then(() => process.exit(0)));
