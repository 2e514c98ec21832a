// Benchmark of the DNS responder against dnsmasq (the measurement lives in bench/scenarios/dns.ts;
// npm run bench -- --scenario dns runs the same with a report). Figures as JSON on stdout,
// progress on stderr; --out FILE also writes the JSON there.
// --pin runs dnsperf on CPU 0 and every server on CPU 1 (taskset) to take scheduler moves out.
// --codec adds dgram + dns-packet; --dns2 DIR adds the dns2 server (not a dependency).
//   npm run build && npx node bench/dns.ts [--rounds 3] [--duration 5] [--clients 4] [--pin] [--codec] [--dns2 DIR] [--smoke] [--out FILE]
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { ensureTools } from './lib/tools.ts';
import { runDnsBench } from './scenarios/dns.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    clients: { type: 'string', default: '4' },
    pin: { type: 'boolean', default: false },
    codec: { type: 'boolean', default: false },
    dns2: { type: 'string' },
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const smoke = values.smoke;
const rounds = smoke ? 1 : Number(values.rounds);
const duration = smoke ? 1 : Number(values.duration);
const clients = Number(values.clients);
for (const [name, v] of [
  ['--rounds', rounds],
  ['--duration', duration],
  ['--clients', clients],
] as const) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`${name} must be a whole number of at least 1, got ${JSON.stringify(values[name.slice(2) as 'rounds'])}`);
    process.exit(2);
  }
}
const tools = ensureTools(['dnsperf', 'dnsmasq', 'dig', ...(values.pin ? ['taskset'] : [])], (m) => console.error(m));
if (tools.missing.length) {
  console.error(`missing ${tools.missing.join(', ')}`);
  process.exit(2);
}
const result = await runDnsBench({
  rounds,
  duration,
  clients,
  pin: values.pin,
  codec: values.codec,
  dns2: values.dns2,
  log: (m) => console.error(m),
});
const out = {
  ...result,
  command: `npx node bench/dns.ts --rounds ${rounds} --duration ${duration} --clients ${clients}${values.pin ? ' --pin' : ''}${values.codec ? ' --codec' : ''}${smoke ? ' --smoke' : ''}`,
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    node: process.version,
    note: 'dnsperf, dnsmasq and shoal share these cores: figures are noisy',
  },
};
console.log(JSON.stringify(out, null, 2));
if (values.out) writeFileSync(values.out, `${JSON.stringify(out, null, 2)}\n`);
process.exit(0);
