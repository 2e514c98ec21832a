// shared/metricsRegistry.ts writes what prom-client writes for the same metrics, and its output parses as the
// Prometheus text format (0.0.4): families with HELP and TYPE, histograms with cumulative le buckets
// ending in +Inf equal to _count, and label values escaped so they read back as set.
import t from 'tap';
import * as prom from 'prom-client';
import { Counter, Gauge, Histogram, Registry, formatValue, type MetricData } from '../../shared/metricsRegistry.ts';
import { createRegistry } from '../../shared/metrics.ts';

type Lib = { Registry: new () => prom.Registry; Counter: typeof prom.Counter; Gauge: typeof prom.Gauge; Histogram: typeof prom.Histogram };
const ours = { Registry, Counter, Gauge, Histogram } as unknown as Lib;
const theirs = { Registry: prom.Registry, Counter: prom.Counter, Gauge: prom.Gauge, Histogram: prom.Histogram } as unknown as Lib;

const NASTY = 'back\\slash "quoted"\nnew line é';

/** The same metrics and the same updates, in either library; returns the registry. */
function populate(lib: Lib): prom.Registry {
  const registry = new lib.Registry();
  registry.setDefaultLabels({ piece: 'proxy' });
  const r = [registry];
  const requests = new lib.Counter({
    name: 'shoal_test_requests_total',
    help: 'Requests by dependency and status\nsecond line with \\ backslash',
    labelNames: ['dependency', 'status_class'],
    registers: r,
  });
  requests.inc({ dependency: 'api.default:8080', status_class: '2xx' });
  requests.inc({ dependency: 'api.default:8080', status_class: '2xx' }, 41);
  requests.labels('api.default:8080', '5xx').inc();
  requests.labels({ dependency: NASTY, status_class: '4xx' }).inc(2.5);
  new lib.Counter({ name: 'shoal_test_plain_total', help: 'No labels: written as 0 before any inc', registers: r });
  const errors = new lib.Counter({
    name: 'shoal_test_errors_total',
    help: 'Made-up responses',
    labelNames: ['dependency', 'error'],
    registers: r,
  });
  errors.inc({ dependency: 'api', error: 'no-endpoints' }, 3);
  errors.inc({ dependency: 'api', error: 'upstream-reset' });
  errors.remove({ dependency: 'api', error: 'upstream-reset' });
  const gauge = new lib.Gauge({
    name: 'shoal_test_connections_active',
    help: 'Open connections',
    labelNames: ['listener', 'direction'],
    registers: r,
  });
  gauge.inc({ listener: 'api:8080', direction: 'outbound' });
  gauge.inc({ listener: 'api:8080', direction: 'outbound' }, 4);
  gauge.dec({ listener: 'api:8080', direction: 'outbound' });
  gauge.labels('web:80', 'inbound').set(7);
  gauge.labels({ listener: 'web:80', direction: 'inbound' }).dec(2);
  gauge.set({ listener: 'db:5432', direction: 'outbound' }, -1.5);
  const version = new lib.Gauge({ name: 'shoal_test_config_version', help: 'Applied version', labelNames: ['version'], registers: r });
  version.set({ version: 'abc' }, 1);
  version.remove('abc');
  version.set({ version: 'def' }, 1);
  let collected = 0;
  new lib.Gauge({
    name: 'shoal_test_collected',
    help: 'Set by collect() at scrape',
    registers: r,
    collect() {
      this.set(++collected * 10);
    },
  });
  const latency = new lib.Histogram({
    name: 'shoal_test_duration_seconds',
    help: 'Latency',
    labelNames: ['upstream', 'outcome'],
    buckets: [0.001, 0.01, 0.1, 1],
    registers: r,
  });
  for (const v of [0.0005, 0.001, 0.002, 0.05, 0.5, 3, 0.01]) latency.observe({ upstream: '10.0.0.1:53', outcome: 'answer' }, v);
  latency.labels('10.0.0.2:53', 'timeout').observe(1);
  latency.zero({ upstream: '10.0.0.3:53', outcome: 'answer' });
  const plain = new lib.Histogram({ name: 'shoal_test_plain_seconds', help: 'Default buckets, no labels', registers: r });
  plain.observe(0.3);
  plain.observe(20);
  // A metric read from plain numbers at scrape, as proxy/metrics.ts's ScrapedMetric: get() is synchronous.
  registry.registerMetric({
    name: 'shoal_test_scraped_seconds',
    help: 'Scraped histogram',
    type: 'histogram',
    aggregator: 'sum',
    get: (): MetricData => ({
      name: 'shoal_test_scraped_seconds',
      help: 'Scraped histogram',
      type: 'histogram',
      aggregator: 'sum',
      values: [
        { labels: { le: 0.5, dependency: 'api' }, value: 2, metricName: 'shoal_test_scraped_seconds_bucket' },
        { labels: { le: '+Inf', dependency: 'api' }, value: 3, metricName: 'shoal_test_scraped_seconds_bucket' },
        { labels: { dependency: 'api' }, value: 1.75, metricName: 'shoal_test_scraped_seconds_sum' },
        { labels: { dependency: 'api' }, value: 3, metricName: 'shoal_test_scraped_seconds_count' },
      ],
    }),
  } as never);
  return registry;
}

t.test('writes exactly what prom-client writes for the same metrics', async (t) => {
  const a = await populate(ours).metrics();
  const b = await populate(theirs).metrics();
  t.equal(a, b);
  t.match(
    a,
    /shoal_test_requests_total\{dependency="back\\\\slash \\"quoted\\"\\nnew line é",status_class="4xx",piece="proxy"\} 2\.5/,
    'label value escaped',
  );
  t.match(a, /# HELP shoal_test_requests_total Requests by dependency and status\\nsecond line with \\\\ backslash\n/, 'help escaped');
  t.match(a, /shoal_test_duration_seconds_bucket\{le="\+Inf",piece="proxy",upstream="10\.0\.0\.1:53",outcome="answer"\} 7\n/);
  t.equal(populate(ours).contentType, populate(theirs).contentType);
});

t.test("each registry takes the other library's metrics and writes them the same", async (t) => {
  // The sidecar hosts prom-client-typed code (tests give the DNS responder a prom-client registry), and
  // discover registers prom-client metrics in the registry shared/metrics.ts makes.
  const mixed = (registry: prom.Registry, lib: Lib) => {
    registry.setDefaultLabels({ piece: 'dns' });
    const h = new lib.Histogram({
      name: 'shoal_mixed_seconds',
      help: 'h',
      labelNames: ['upstream'],
      buckets: [0.1, 1],
      registers: [registry],
    });
    h.observe({ upstream: 'a' }, 0.2);
    new lib.Counter({ name: 'shoal_mixed_total', help: 'c', labelNames: ['kind'], registers: [registry] }).inc({ kind: 'x' }, 2);
    return registry.metrics();
  };
  const reference = await mixed(new prom.Registry(), theirs);
  t.equal(await mixed(new prom.Registry(), ours), reference, 'our metrics in a prom-client registry');
  t.equal(await mixed(new Registry(), theirs), reference, 'prom-client metrics in our registry');
  t.equal(await mixed(new Registry(), ours), reference);
});

t.test('the output parses as the Prometheus text format', async (t) => {
  const text = await populate(ours).metrics();
  const families = parseExposition(text);
  const requests = families.get('shoal_test_requests_total')!;
  t.equal(requests.type, 'counter');
  t.same(
    requests.samples.find((s) => s.labels.status_class === '4xx')?.labels,
    { dependency: NASTY, status_class: '4xx', piece: 'proxy' },
    'escaped label value reads back as set',
  );
  t.equal(requests.samples.find((s) => s.labels.status_class === '2xx')?.value, 42);
  t.same(families.get('shoal_test_plain_total')!.samples, [{ name: 'shoal_test_plain_total', labels: { piece: 'proxy' }, value: 0 }]);
  t.same(
    families.get('shoal_test_errors_total')!.samples.map((s) => s.labels.error),
    ['no-endpoints'],
    'removed series is gone',
  );
  const conns = families.get('shoal_test_connections_active')!;
  t.equal(conns.type, 'gauge');
  t.same(
    conns.samples.map((s) => s.value),
    [4, 5, -1.5],
  );
  t.same(
    families.get('shoal_test_config_version')!.samples.map((s) => s.labels.version),
    ['def'],
  );
  t.equal(families.get('shoal_test_collected')!.samples[0].value, 10, 'collect() ran before the scrape was written');

  const hist = families.get('shoal_test_duration_seconds')!;
  t.equal(hist.type, 'histogram');
  const one = hist.samples.filter((s) => s.labels.upstream === '10.0.0.1:53');
  t.same(
    one.filter((s) => s.name.endsWith('_bucket')).map((s) => [s.labels.le, s.value]),
    [
      ['0.001', 2],
      ['0.01', 4],
      ['0.1', 5],
      ['1', 6],
      ['+Inf', 7],
    ],
    'cumulative buckets, le inclusive',
  );
  t.equal(one.find((s) => s.name.endsWith('_count'))?.value, 7);
  t.ok(Math.abs(one.find((s) => s.name.endsWith('_sum'))!.value - 3.5635) < 1e-9);
  const zeroed = hist.samples.filter((s) => s.labels.upstream === '10.0.0.3:53');
  t.equal(zeroed.length, 7, 'zero() exports every bucket, _sum and _count');
  t.ok(zeroed.every((s) => s.value === 0));
  const plain = families.get('shoal_test_plain_seconds')!.samples;
  t.same(
    plain.filter((s) => s.name.endsWith('_bucket')).map((s) => s.labels.le),
    ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf'],
  );
  t.equal(plain.find((s) => s.labels.le === '10')?.value, 1, '20 s falls only in +Inf');
  t.equal(plain.find((s) => s.labels.le === '+Inf')?.value, 2);
});

t.test('bad use fails loudly, naming what is wrong', async (t) => {
  const registry = new Registry();
  const c = new Counter({ name: 'shoal_x_total', help: 'x', labelNames: ['a'], registers: [registry] });
  t.throws(() => c.inc({ b: '1' } as never), /Added label "b" is not included in initial labelset/);
  t.throws(() => c.inc({ a: '1' }, -1), /not possible to decrease a counter/);
  t.throws(() => c.inc(Number.NaN), /not a valid number/);
  t.throws(() => c.labels('1', '2'), /Invalid number of arguments \(2\)/);
  t.throws(() => new Counter({ name: 'shoal_x_total', help: 'again', registers: [registry] }), /already been registered/);
  t.throws(() => new Gauge({ name: 'bad-name', help: 'x' }), /Invalid metric name "bad-name"/);
  t.throws(() => new Gauge({ name: 'shoal_g', help: 'x', labelNames: ['0x'] }), /Invalid label name "0x"/);
  t.throws(() => new Gauge({ name: 'shoal_g', help: '' }), /Missing mandatory help/);
  t.throws(() => new Histogram({ name: 'shoal_h', help: 'x', labelNames: ['le'] }), /le is a reserved label/);
  t.throws(() => new Histogram({ name: 'shoal_h', help: 'x', buckets: [1, 0.5] }), /strictly increasing/);
  t.throws(() => new Histogram({ name: 'shoal_h', help: 'x' }).observe(Infinity), /not a valid number/);
  t.throws(() => registry.setContentType('application/openmetrics-text; version=1.0.0; charset=utf-8'), /not supported/);
  await t.rejects(registry.getSingleMetricAsString('nope'), /no metric named nope/);
  t.equal(formatValue(Number.NaN), 'NaN');
  t.equal(formatValue(-Infinity), '-Inf');
});

t.test('registry bookkeeping as prom-client: single metric, JSON, reset, remove, clear', async (t) => {
  const registry = new Registry();
  registry.setDefaultLabels({ piece: 'dns' });
  const c = new Counter({ name: 'shoal_y_total', help: 'y', labelNames: ['k'], registers: [registry] });
  c.inc({ k: 'v' }, 3);
  t.equal(registry.getSingleMetric('shoal_y_total'), c as unknown);
  t.equal(
    await registry.getSingleMetricAsString('shoal_y_total'),
    '# HELP shoal_y_total y\n# TYPE shoal_y_total counter\nshoal_y_total{k="v",piece="dns"} 3',
  );
  const json = await registry.getMetricsAsJSON();
  t.same(
    json.map((m) => [m.name, m.values]),
    [['shoal_y_total', [{ labels: { k: 'v', piece: 'dns' }, value: 3 }]]],
  );
  registry.resetMetrics();
  t.equal(
    await registry.metrics(),
    '# HELP shoal_y_total y\n# TYPE shoal_y_total counter\n',
    'a labelled counter has no series after reset',
  );
  registry.removeSingleMetric('shoal_y_total');
  t.equal(registry.getMetricsAsArray().length, 0);
  t.equal(registry.contentType, 'text/plain; version=0.0.4; charset=utf-8');
});

t.test("createRegistry: every series labelled with the piece, process metrics under prom-client's names", async (t) => {
  const registry = createRegistry('proxy');
  new Counter({ name: 'shoal_proxy_z_total', help: 'z', registers: [registry] }).inc();
  const families = parseExposition(await registry.metrics());
  for (const [name, type] of [
    ['shoal_process_cpu_user_seconds_total', 'counter'],
    ['shoal_process_cpu_seconds_total', 'counter'],
    ['shoal_process_resident_memory_bytes', 'gauge'],
    ['shoal_process_start_time_seconds', 'gauge'],
    ['shoal_process_open_fds', 'gauge'],
    ['shoal_process_max_fds', 'gauge'],
    ['shoal_nodejs_eventloop_lag_seconds', 'gauge'],
    ['shoal_nodejs_eventloop_lag_p99_seconds', 'gauge'],
    ['shoal_nodejs_heap_size_used_bytes', 'gauge'],
    ['shoal_nodejs_heap_space_size_used_bytes', 'gauge'],
    ['shoal_nodejs_version_info', 'gauge'],
    ['shoal_nodejs_active_resources_total', 'gauge'],
  ]) {
    t.equal(families.get(name)?.type, type, `${name} is a ${type}`);
  }
  for (const f of families.values()) for (const s of f.samples) t.equal(s.labels.piece, 'proxy', `${s.name} has piece="proxy"`);
  const rss = families.get('shoal_process_resident_memory_bytes')!.samples[0].value;
  t.ok(rss > 10e6 && rss < 4e9, `RSS ${rss} bytes is plausible`);
  t.ok(families.get('shoal_process_open_fds')!.samples[0].value > 2);
  t.same(
    families.get('shoal_nodejs_heap_space_size_used_bytes')!.samples.some((s) => s.labels.space === 'old'),
    true,
    'heap spaces named as prom-client names them',
  );
  t.equal(families.get('shoal_nodejs_version_info')!.samples[0].labels.version, process.version);
  t.equal(families.get('shoal_proxy_z_total')!.samples[0].value, 1);
});

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  help: string;
  type: string;
  samples: ParsedSample[];
}

/**
 * A strict reader of the text format 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats): HELP then
 * TYPE once per family, before its samples; sample names of the family (histograms: _bucket with le, _sum,
 * _count); label values with only \\, \" and \n escapes; values Go's ParseFloat reads; histogram buckets
 * increasing in le, cumulative, the last +Inf and equal to _count. Throws naming the line at fault.
 */
function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, Family>();
  let current: { name: string; family: Family } | undefined;
  const lines = text.slice(0, -1).split('\n');
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1} ${JSON.stringify(line)}`;
    if (line === '') continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      if (families.has(m[1])) throw new Error(`${where}: second HELP for ${m[1]}`);
      if (/\\[^\\n]/.test(m[2].replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in HELP`);
      current = { name: m[1], family: { help: m[2], type: 'untyped', samples: [] } };
      families.set(m[1], current.family);
      continue;
    }
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      if (current?.name !== m[1] || current.family.samples.length > 0) throw new Error(`${where}: TYPE not right after its HELP`);
      current.family.type = m[2];
      continue;
    }
    if (line.startsWith('#')) throw new Error(`${where}: unknown comment`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || !current) throw new Error(`${where}: not a sample line`);
    const [, name, labelText = '', valueText] = m;
    const suffixes = current.family.type === 'histogram' ? ['_bucket', '_sum', '_count'] : [''];
    if (!suffixes.some((s) => name === current!.name + s)) throw new Error(`${where}: sample ${name} outside family ${current.name}`);
    const labels: Record<string, string> = {};
    const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
    let at = 0;
    while (at < labelText.length) {
      labelRe.lastIndex = at;
      const lm = labelRe.exec(labelText);
      if (!lm) throw new Error(`${where}: bad label at ${JSON.stringify(labelText.slice(at))}`);
      if (Object.hasOwn(labels, lm[1])) throw new Error(`${where}: label ${lm[1]} twice`);
      labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      at = labelRe.lastIndex;
      if (lm[3] === '' && at !== labelText.length) throw new Error(`${where}: missing comma`);
    }
    const value = /^[+-]Inf$/.test(valueText)
      ? valueText[0] === '-'
        ? -Infinity
        : Infinity
      : valueText === 'NaN'
        ? Number.NaN
        : Number(valueText);
    if (!/^([+-]Inf|NaN|-?[0-9.]+(e[+-]?[0-9]+)?)$/.test(valueText) || (Number.isNaN(value) && valueText !== 'NaN'))
      throw new Error(`${where}: bad value`);
    if (name.endsWith('_bucket') && current.family.type === 'histogram' && labels.le === undefined)
      throw new Error(`${where}: bucket without le`);
    current.family.samples.push({ name, labels, value });
  }
  for (const [name, f] of families) {
    if (f.type !== 'histogram') continue;
    const series = new Map<string, ParsedSample[]>();
    for (const s of f.samples) {
      const { le: _le, ...rest } = s.labels;
      const key = JSON.stringify(Object.entries(rest).sort());
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, samples] of series) {
      const buckets = samples.filter((s) => s.name === `${name}_bucket`);
      for (let i = 1; i < buckets.length; i++) {
        const [a, b] = [
          Number(buckets[i - 1].labels.le.replace('+Inf', 'Infinity')),
          Number(buckets[i].labels.le.replace('+Inf', 'Infinity')),
        ];
        if (!(b > a) || buckets[i].value < buckets[i - 1].value) throw new Error(`${name} ${key}: buckets not increasing and cumulative`);
      }
      const count = samples.find((s) => s.name === `${name}_count`);
      if (buckets.at(-1)?.labels.le !== '+Inf' || count === undefined || samples.every((s) => s.name !== `${name}_sum`))
        throw new Error(`${name} ${key}: needs +Inf, _sum and _count`);
      if (buckets.at(-1)!.value !== count.value)
        throw new Error(`${name} ${key}: +Inf bucket ${buckets.at(-1)!.value} != _count ${count.value}`);
    }
  }
  return families;
}

t.test('the reader above rejects what Prometheus would', async (t) => {
  t.throws(() => parseExposition('# HELP a x\n# TYPE a counter\na{b="unterminated} 1\n'), /bad label/);
  t.throws(() => parseExposition('# HELP a x\n# TYPE a counter\na{b="x"} one\n'), /bad value/);
  t.throws(() => parseExposition('# HELP a x\n# TYPE a counter\nb 1\n'), /outside family/);
  t.throws(
    () => parseExposition('# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'),
    /cumulative/,
  );
  t.throws(() => parseExposition('# HELP h x\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'), /!= _count/);
  t.throws(() => parseExposition('# HELP a x\n# TYPE a counter\na{b="bad \\t escape"} 1\n'), /bad label/);
});
