// A bench child: the DNS responder from the built JavaScript (dist/), with the names and
// upstream it is given, on 127.0.0.1 and a free port; prints "port N" once it listens.
//   node bench/lib/dnsResponderChild.ts DIST_MAIN_JS UPSTREAM NAMES_JSON
import { pathToFileURL } from 'node:url';

const [distMain, upstream, namesJson] = process.argv.slice(2);
const { startDnsResponder } = await import(pathToFileURL(distMain).href);
const { createLogger } = await import(pathToFileURL(distMain.replace(/dns\/main\.js$/, 'shared/log.js')).href);
const r = await startDnsResponder({
  host: '127.0.0.1',
  port: 0,
  upstreams: upstream ? [upstream] : [],
  names: JSON.parse(namesJson),
  log: createLogger('dns', 'warn'),
});
process.stdout.write(`port ${r.udpPort}\n`);
process.on('SIGTERM', () => {
  r.close().then(() => process.exit(0));
});
