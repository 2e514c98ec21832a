// What tracing adds to one request, measured alone: the tracer's begin (trace headers read, the sampling
// draw, ids and the traceparent for a new trace) and end, a million times, at the given ratio, with no
// trace headers on the request (every trace new, as in the tracing scenario). Built JavaScript (dist/):
//   npm run build && npx node bench/tracingPerRequest.mjs [ratio]
import { SidecarTracer } from '../dist/proxy/tracing/sidecarTracer.js';

const ratio = Number(process.argv[2] ?? '0.01');
let spans = 0;
const tracer = new SidecarTracer(ratio, {
  add() {
    spans++;
  },
});
const site = { name: 'api.default:8080', direction: 'outbound' };
const endpoint = { key: '10.0.0.7:8080', address: '10.0.0.7', port: 8080 };
const raw = ['Host', '127.77.0.7:8080', 'User-Agent', 'wrk', 'Accept', '*/*'];
let sink = 0;
for (let round = 0; round < 5; round++) {
  const t0 = performance.now();
  for (let i = 0; i < 1e6; i++) {
    const t = tracer.beginRaw(raw, 0, site, false);
    sink += t.traceparent.length;
    t.end('GET', '/', '127.77.0.7:8080', '127.0.0.1', 200, '', 'api.default:8080', endpoint, 0, -1);
  }
  process.stdout.write(`round ${round + 1}: ${(((performance.now() - t0) / 1e6) * 1e6).toFixed(0)} ns per request at ratio ${ratio}\n`);
}
process.stdout.write(`${spans} spans recorded (${sink > 0 ? 'traceparent made for every request' : 'no traceparent'})\n`);
