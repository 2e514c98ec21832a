// Which span exporter the sidecar should carry, measured: the OpenTelemetry JS SDK (BasicTracerProvider,
// BatchSpanProcessor, OTLPTraceExporter over HTTP/JSON; devDependencies) against shoal's own encoder and
// exporter (proxy/tracing/), each in a fresh process with the sidecar's Node flags, recording the same
// request traces (a server and a client span each) at the same pace, to the same loopback OTLP/HTTP sink.
// RSS before and after loading each, at the end and at peak; CPU per 1,000 spans; spans the sink got.
//   npm run build && npx node bench/tracingEncoders.ts [--rate 2000] [--seconds 10] [--rounds 3]
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const FLAGS = ['--max-semi-space-size=1', '--v8-pool-size=1', '--expose-gc'];

let spans = 0;
const sink = createServer((req, res) => {
  let body = '';
  req
    .setEncoding('utf8')
    .on('data', (d) => {
      body += d;
    })
    .on('end', () => {
      const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] };
      for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans += ss.spans.length;
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
});
await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`;

interface Run {
  variant: string;
  count: number;
  rssStartMb: number;
  rssLoadedMb: number;
  rssEndMb: number;
  peakMb: number;
  loadCpuMs: number;
  runCpuMs: number;
  wallMs: number;
  received: number;
}
const runs: Run[] = [];
const variants = ['none', 'shoal', 'sdk'];
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < variants.length; i++) {
    const variant = variants[(i + round) % variants.length];
    spans = 0;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [...FLAGS, join(import.meta.dirname, 'lib', 'tracingEncoderChild.mjs'), variant, url, String(rate), String(seconds)],
      { cwd: join(import.meta.dirname, '..') },
    );
    const r = { ...(JSON.parse(stdout) as Omit<Run, 'received'>), received: spans };
    runs.push(r);
    process.stderr.write(`round ${round + 1} ${variant}: ${JSON.stringify(r)}\n`);
  }
}
sink.close();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f = (x: number, d = 1) => x.toFixed(d);
const rows = variants.map((v) => {
  const rs = runs.filter((r) => r.variant === v);
  const m = (k: keyof Run) => median(rs.map((r) => r[k] as number));
  const perK = v === 'none' ? NaN : median(rs.map((r) => r.runCpuMs / ((2 * r.count) / 1000)));
  return `| ${v} | ${f(m('rssLoadedMb') - m('rssStartMb'))} | ${f(m('rssEndMb'))} | ${f(m('peakMb'))} | ${f(m('loadCpuMs'), 0)} | ${f(m('runCpuMs'), 0)} | ${Number.isNaN(perK) ? '—' : f(perK, 2)} | ${m('received')} of ${v === 'none' ? 0 : 2 * m('count')} |`;
});
process.stdout
  .write(`${rate} request traces/s (${2 * rate} spans/s) for ${seconds} s, ${rounds} rounds, median; Node ${process.version}, flags ${FLAGS.join(' ')}
| exporter | RSS added by loading it (MB) | RSS at the end (MB) | peak RSS (MB) | CPU to load (ms) | CPU for the run (ms) | CPU per 1,000 spans (ms) | spans received |
|---|---:|---:|---:|---:|---:|---:|---:|
${rows.join('\n')}
`);
