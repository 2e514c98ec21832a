// A metrics registry without prom-client: the part of its API the sidecar uses (Registry, Counter, Gauge,
// Histogram), exposed as Prometheus text (format 0.0.4) written out the way prom-client writes it. prom-client costs the
// sidecar megabytes of RSS at import (pushgateway, cluster aggregation, exemplars; docs/performance.md) for a
// few counters; discover may keep it. The classes implement prom-client's types, so code typed against
// prom-client takes them, and either registry takes the other's metrics (both read metric.get()).
import type * as prom from 'prom-client';

type LabelValues<T extends string> = Partial<Record<T, string | number>>;

/** One sample as a registry reads it: prom-client's MetricValue (metricName for _bucket/_sum/_count). */
export interface Sample {
  labels: Record<string, string | number | undefined>;
  value: number;
  metricName?: string;
  /** Labels of the series a histogram sample belongs to, written after `labels` (prom-client's getForPromString). */
  sharedLabels?: Record<string, string | number | undefined>;
}

/** What a registry reads from a metric at scrape: prom-client's get() result. */
export interface MetricData {
  name: string;
  help: string;
  type: string;
  values: Sample[];
  aggregator?: string;
}

/** Anything a Registry can hold: these classes, prom-client's metrics, or an object reading its values at scrape. */
export interface Collectable {
  name: string;
  get(): MetricData | Promise<MetricData>;
  getForPromString?(): MetricData | Promise<MetricData>;
  reset?(): void;
}

const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

type PromData<M extends { get(): Promise<unknown> }> = Awaited<ReturnType<M['get']>>;

export class Registry implements prom.Registry {
  static readonly PROMETHEUS_CONTENT_TYPE = PROMETHEUS_CONTENT_TYPE;
  readonly #metrics = new Map<string, Collectable>();
  #defaultLabels: Record<string, string | number> = {};

  get contentType(): typeof PROMETHEUS_CONTENT_TYPE {
    return PROMETHEUS_CONTENT_TYPE;
  }

  /** Only the Prometheus text format is written; OpenMetrics is refused by name. */
  setContentType(contentType: string): void {
    if (contentType !== PROMETHEUS_CONTENT_TYPE)
      throw new Error(`content type ${JSON.stringify(contentType)} is not supported: this registry writes ${PROMETHEUS_CONTENT_TYPE}`);
  }

  registerMetric(metric: Collectable | prom.Metric<string>): void {
    const m = metric as Collectable;
    const existing = this.#metrics.get(m.name);
    if (existing !== undefined && existing !== m) throw new Error(`A metric with the name ${m.name} has already been registered.`);
    this.#metrics.set(m.name, m);
  }

  getSingleMetric<T extends string>(name: string): prom.Metric<T> | undefined {
    return this.#metrics.get(name) as prom.Metric<T> | undefined;
  }

  getMetricsAsArray(): ReturnType<prom.Registry['getMetricsAsArray']> {
    return [...this.#metrics.values()] as unknown as ReturnType<prom.Registry['getMetricsAsArray']>;
  }

  removeSingleMetric(name: string): void {
    this.#metrics.delete(name);
  }

  clear(): void {
    this.#metrics.clear();
    this.#defaultLabels = {};
  }

  resetMetrics(): void {
    for (const m of this.#metrics.values()) m.reset?.();
  }

  /** Labels added to every series (a series' own label of the same name wins). */
  setDefaultLabels(labels: object): void {
    this.#defaultLabels = { ...(labels as Record<string, string | number>) };
  }

  async metrics(): Promise<string> {
    const parts = await Promise.all([...this.#metrics.values()].map((m) => this.#format(m)));
    return `${parts.join('\n\n')}\n`;
  }

  async getSingleMetricAsString(name: string): Promise<string> {
    const m = this.#metrics.get(name);
    if (m === undefined) throw new Error(`no metric named ${name} in this registry`);
    return this.#format(m);
  }

  async getMetricsAsJSON(): ReturnType<prom.Registry['getMetricsAsJSON']> {
    const defaults = Object.entries(this.#defaultLabels);
    // eslint-disable-next-line @typescript-eslint/await-thenable -- get() returns MetricData or a Promise of it: Promise.all takes both
    const all = await Promise.all([...this.#metrics.values()].map((m) => m.get()));
    for (const data of all) {
      if (defaults.length === 0) continue;
      data.values = data.values.map((v) => {
        const labels = { ...v.labels };
        for (const [k, d] of defaults) labels[k] = labels[k] || d;
        return { ...v, labels };
      });
    }
    return all as unknown as Awaited<ReturnType<prom.Registry['getMetricsAsJSON']>>;
  }

  async #format(metric: Collectable): Promise<string> {
    const data = metric.getForPromString ? await metric.getForPromString() : await metric.get();
    const name = escapeText(data.name);
    const lines = [`# HELP ${name} ${escapeText(data.help)}`, `# TYPE ${name} ${data.type}`];
    const defaults = this.#defaultLabels;
    const hasDefaults = Object.keys(defaults).length > 0;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a get() result made in JavaScript may omit values or labels
    for (const v of data.values ?? []) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a get() result made in JavaScript may omit values or labels
      let labels = v.labels ?? {};
      // prom-client's order: the sample's labels, then defaults it lacks, then the series' shared labels.
      if (hasDefaults) labels = { ...labels, ...defaults, ...labels };
      const shared = v.sharedLabels;
      let text = '';
      for (const k in labels) {
        if (shared !== undefined && Object.hasOwn(shared, k)) continue;
        text += `${text === '' ? '' : ','}${k}="${escapeLabelValue(labels[k])}"`;
      }
      if (shared !== undefined) for (const k in shared) text += `${text === '' ? '' : ','}${k}="${escapeLabelValue(shared[k])}"`;
      lines.push(`${v.metricName ?? name}${text === '' ? '' : `{${text}}`} ${formatValue(v.value)}`);
    }
    return lines.join('\n');
  }
}

function escapeText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelValue(v: string | number | undefined): string {
  return typeof v === 'string' ? escapeText(v).replace(/"/g, '\\"') : String(v);
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return `${v}`;
}

interface Config<T extends string> {
  name: string;
  help: string;
  labelNames?: readonly T[];
  registers?: readonly RegistryLike[];
  aggregator?: prom.Aggregator;
  enableExemplars?: boolean;
}

/** This Registry or prom-client's: a metric registers itself in each it is given. */
interface RegistryLike {
  registerMetric(metric: never): void;
}

interface Series<T extends string> {
  labels: LabelValues<T>;
  value: number;
}

/** The parts every metric shares: name checks, label checks and the series key. */
abstract class Metric<T extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly T[];
  readonly aggregator: prom.Aggregator;
  abstract readonly type: 'counter' | 'gauge' | 'histogram';

  constructor(config: Config<T>) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- checks what a JavaScript caller hands the constructor
    if (typeof config !== 'object' || config === null) throw new TypeError('constructor expected a config object');
    if (!config.name) throw new Error('Missing mandatory name parameter');
    if (!config.help) throw new Error(`Missing mandatory help parameter for metric ${config.name}`);
    if (!METRIC_NAME.test(config.name)) throw new Error(`Invalid metric name ${JSON.stringify(config.name)}: expected ${METRIC_NAME}`);
    for (const l of config.labelNames ?? [])
      if (!LABEL_NAME.test(l)) throw new Error(`Invalid label name ${JSON.stringify(l)} on metric ${config.name}: expected ${LABEL_NAME}`);
    if (config.enableExemplars) throw new Error(`metric ${config.name}: exemplars need OpenMetrics, which this registry does not write`);
    this.name = config.name;
    this.help = config.help;
    this.labelNames = [...(config.labelNames ?? [])];
    this.aggregator = config.aggregator ?? 'sum';
  }

  /** Called by subclasses once their own fields exist: registers report the metric at once. */
  protected register(registers: readonly RegistryLike[] | undefined): void {
    for (const r of registers ?? []) r.registerMetric(this as never);
  }

  /** The series key: declared label names in order; a missing label is not part of it (as prom-client). */
  protected key(labels: LabelValues<T>): string {
    let k = '';
    for (const n of this.labelNames) {
      const v = labels[n];
      if (v !== undefined) k += `${n}:${v},`;
    }
    return k;
  }

  protected check(labels: object): void {
    for (const n in labels) {
      if (!this.labelNames.includes(n as T))
        throw new Error(`Added label "${n}" is not included in initial labelset: [ ${this.labelNames.map((x) => `'${x}'`).join(', ')} ]`);
    }
  }

  /** labels('a', 'b') or labels({ x: 'a' }) as prom-client reads them. */
  protected labelArgs(args: unknown[]): LabelValues<T> {
    if (typeof args[0] === 'object' && args[0] !== null) return args[0] as LabelValues<T>;
    if (args.length !== this.labelNames.length) {
      throw new Error(
        `Invalid number of arguments (${args.length}): "${args.join(', ')}" for label names (${this.labelNames.length}): "${this.labelNames.join(', ')}".`,
      );
    }
    const out: LabelValues<T> = {};
    for (let i = 0; i < args.length; i++) out[this.labelNames[i]] = args[i] as string;
    return out;
  }
}

function isLabels(x: unknown): x is object {
  return typeof x === 'object' && x !== null;
}

/** Counter and Gauge: one value per label set, and what both do with their series. */
abstract class ValueMetric<T extends string> extends Metric<T> {
  protected series = new Map<string, Series<T>>();
  readonly #collect: ((this: never) => void | Promise<void>) | undefined;

  constructor(config: Config<T> & { collect?: unknown }) {
    super(config);
    this.#collect = config.collect as never;
    this.reset();
  }

  remove(...values: string[]): void;
  remove(labels: LabelValues<T>): void;
  remove(...args: unknown[]): void {
    const labels = this.labelArgs(args);
    this.check(labels);
    this.series.delete(this.key(labels));
  }

  reset(): void {
    this.series = new Map();
    if (this.labelNames.length === 0) this.series.set('', { labels: {}, value: 0 });
  }

  /** get(): runs the collect callback first, then reads every series. */
  protected async values(): Promise<{ name: string; help: string; type: string; values: Series<T>[]; aggregator: prom.Aggregator }> {
    if (this.#collect) await this.#collect.call(this as never);
    return { name: this.name, help: this.help, type: this.type, values: [...this.series.values()], aggregator: this.aggregator };
  }
}

export class Counter<T extends string = string> extends ValueMetric<T> implements prom.Counter<T> {
  readonly type = 'counter';

  constructor(config: prom.CounterConfiguration<T>) {
    super(config);
    this.register(config.registers);
  }

  inc(labels: LabelValues<T>, value?: number): void;
  inc(value?: number): void;
  inc(incData: prom.IncreaseDataWithExemplar<T>): void;
  inc(a?: LabelValues<T> | number | prom.IncreaseDataWithExemplar<T>, b?: number): void {
    let labels: LabelValues<T> = {};
    let value = b;
    if (isLabels(a)) {
      labels = a as LabelValues<T>;
      this.check(labels);
    } else {
      value = a;
    }
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- prom-client takes null from JavaScript callers; so does this
    if (value === undefined || value === null) value = 1;
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    if (value < 0) throw new Error('It is not possible to decrease a counter');
    const k = this.key(labels);
    const s = this.series.get(k);
    if (s) s.value += value;
    else this.series.set(k, { labels: { ...labels }, value });
  }

  labels(...values: string[]): prom.Counter.Internal;
  labels(labels: LabelValues<T>): prom.Counter.Internal;
  labels(...args: unknown[]): prom.Counter.Internal {
    const labels = this.labelArgs(args);
    this.check(labels);
    return { inc: (value?: number) => this.inc(labels, value) };
  }

  async get(): Promise<PromData<prom.Counter<T>>> {
    return (await this.values()) as unknown as PromData<prom.Counter<T>>;
  }
}

export class Gauge<T extends string = string> extends ValueMetric<T> implements prom.Gauge<T> {
  readonly type = 'gauge';

  constructor(config: prom.GaugeConfiguration<T>) {
    super(config);
    this.register(config.registers);
  }

  set(labels: LabelValues<T>, value: number): void;
  set(value: number): void;
  set(a: LabelValues<T> | number, b?: number): void {
    const [labels, value] = isLabels(a) ? [a, b] : [{}, a];
    if (typeof value !== 'number') throw new TypeError(`Value is not a valid number: ${value}`);
    this.check(labels);
    const k = this.key(labels);
    const s = this.series.get(k);
    if (s) s.value = value;
    else this.series.set(k, { labels: { ...labels }, value });
  }

  inc(labels: LabelValues<T>, value?: number): void;
  inc(value?: number): void;
  inc(a?: LabelValues<T> | number, b?: number): void {
    this.#add(a, b, 1);
  }

  dec(labels: LabelValues<T>, value?: number): void;
  dec(value?: number): void;
  dec(a?: LabelValues<T> | number, b?: number): void {
    this.#add(a, b, -1);
  }

  #add(a: LabelValues<T> | number | undefined, b: number | undefined, sign: 1 | -1): void {
    const [labels, v] = isLabels(a) ? [a, b] : [{}, a];
    const delta = v === undefined ? 1 : v;
    if (typeof delta !== 'number') throw new TypeError(`Delta is not a valid number: ${delta}`);
    this.check(labels);
    const k = this.key(labels);
    const s = this.series.get(k);
    if (s) s.value += sign * delta;
    else this.series.set(k, { labels: { ...labels }, value: sign * delta });
  }

  setToCurrentTime(labels?: LabelValues<T>): void {
    this.set(labels ?? {}, Date.now() / 1000);
  }

  startTimer(labels?: LabelValues<T>): (labels?: LabelValues<T>) => number {
    const start = process.hrtime.bigint();
    return (end?: LabelValues<T>) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.set({ ...labels, ...end }, seconds);
      return seconds;
    };
  }

  labels(...values: string[]): prom.Gauge.Internal<T>;
  labels(labels: LabelValues<T>): prom.Gauge.Internal<T>;
  labels(...args: unknown[]): prom.Gauge.Internal<T> {
    const labels = this.labelArgs(args);
    this.check(labels);
    return {
      inc: (value?: number) => this.inc(labels, value),
      dec: (value?: number) => this.dec(labels, value),
      set: (value: number) => this.set(labels, value),
      setToCurrentTime: () => this.setToCurrentTime(labels),
      startTimer: () => this.startTimer(labels),
    };
  }

  async get(): Promise<PromData<prom.Gauge<T>>> {
    return (await this.values()) as unknown as PromData<prom.Gauge<T>>;
  }
}

const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface HistogramSeries<T extends string> {
  labels: LabelValues<T>;
  counts: Float64Array;
  sum: number;
  count: number;
}

export class Histogram<T extends string = string> extends Metric<T> implements prom.Histogram<T> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  #series = new Map<string, HistogramSeries<T>>();
  readonly #collect: ((this: Histogram<T>) => void | Promise<void>) | undefined;

  constructor(config: prom.HistogramConfiguration<T>) {
    super(config);
    if (this.labelNames.includes('le' as T)) throw new Error(`metric ${this.name}: le is a reserved label keyword`);
    const buckets = config.buckets ?? DEFAULT_BUCKETS;
    for (let i = 0; i < buckets.length; i++) {
      if (!Number.isFinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
        throw new Error(`metric ${this.name}: buckets must be finite and strictly increasing, got [${buckets.join(', ')}]`);
      }
    }
    this.buckets = [...buckets];
    this.#collect = config.collect as never;
    this.reset();
    this.register(config.registers);
  }

  observe(value: number): void;
  observe(labels: LabelValues<T>, value: number): void;
  observe(observeData: prom.ObserveDataWithExemplar<T>): void;
  observe(a: LabelValues<T> | number | prom.ObserveDataWithExemplar<T>, b?: number): void {
    const [labels, value] = isLabels(a) ? [a as LabelValues<T>, b] : [{}, a];
    this.check(labels);
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const s = this.#seriesOf(labels);
    const bounds = this.buckets;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    if (i < bounds.length) s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  #seriesOf(labels: LabelValues<T>): HistogramSeries<T> {
    const k = this.key(labels);
    let s = this.#series.get(k);
    if (!s) this.#series.set(k, (s = { labels: { ...labels }, counts: new Float64Array(this.buckets.length), sum: 0, count: 0 }));
    return s;
  }

  /** Creates the series with every bucket at 0, so it is exported before its first observation. */
  zero(labels: LabelValues<T>): void {
    this.check(labels);
    this.#series.set(this.key(labels), { labels: { ...labels }, counts: new Float64Array(this.buckets.length), sum: 0, count: 0 });
  }

  startTimer(labels?: LabelValues<T>): (labels?: LabelValues<T>) => number {
    const start = process.hrtime.bigint();
    return (end?: LabelValues<T>) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.observe({ ...labels, ...end } as LabelValues<T>, seconds);
      return seconds;
    };
  }

  labels(...values: string[]): prom.Histogram.Internal<T>;
  labels(labels: LabelValues<T>): prom.Histogram.Internal<T>;
  labels(...args: unknown[]): prom.Histogram.Internal<T> {
    const labels = this.labelArgs(args);
    this.check(labels);
    return {
      observe: (value: number) => this.observe(labels, value),
      startTimer: () => {
        const stop = this.startTimer(labels);
        return (end?: LabelValues<T>) => {
          stop(end);
        };
      },
    };
  }

  remove(...values: string[]): void;
  remove(labels: LabelValues<T>): void;
  remove(...args: unknown[]): void {
    const labels = this.labelArgs(args);
    this.check(labels);
    this.#series.delete(this.key(labels));
  }

  reset(): void {
    this.#series = new Map();
    if (this.labelNames.length === 0) this.#seriesOf({});
  }

  /** Samples with the series' labels apart (sharedLabels), as prom-client's registry writes them. */
  async getForPromString(): Promise<MetricData> {
    if (this.#collect) await this.#collect.call(this);
    const values: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += s.counts[i];
        values.push({ labels: { le: this.buckets[i] }, sharedLabels: s.labels, value: acc, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  async get(): Promise<PromData<prom.Histogram<T>>> {
    const data = await this.getForPromString();
    data.values = data.values.map(({ labels, sharedLabels, value, metricName }) => ({
      labels: { ...labels, ...sharedLabels },
      value,
      metricName,
    }));
    return data as unknown as PromData<prom.Histogram<T>>;
  }
}
