// An OpenTelemetry Collector for the tests and benchmarks: the OTLP receiver and the file exporter,
// built from the Go modules pinned in otel/go.mod (otel/cmd/otelcol/main.go is the distribution's
// components, as the collector's builder would generate them), started on loopback.
//   npm run otel -- build     only build (prints the build's time)
// The binary goes to .cache/otel/bin/<hash>/ (ignored), rebuilt only when the pins, the source, the build
// recipe or the Go version change. The build is niced and runs one compile at a time: it shares the machine.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { goMissing, pinnedVersion, root } from './kube.ts';

const otelModule = join(root, 'otel');
const cacheDir = join(root, '.cache', 'otel');
/** Bumped when the build command below changes, so binaries built the old way are rebuilt. */
const RECIPE = 'otel-build-1: nice -n 10 go build -p 1 -trimpath -buildvcs=false -ldflags "-s -w"';
const SOURCES = ['go.mod', 'go.sum', 'cmd/otelcol/main.go'];

type Log = (message: string) => void;
const stderrLog: Log = (m) => process.stderr.write(`${m}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export { goMissing, root };

function goVersion(): string {
  const missing = goMissing();
  if (missing) throw new Error(missing.replace('the Kubernetes control plane is', 'the OpenTelemetry Collector is'));
  return execFileSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' }).trim();
}

function buildHash(): string {
  const h = createHash('sha256').update(RECIPE).update('\0').update(goVersion());
  for (const f of SOURCES) {
    let text = readFileSync(join(otelModule, f), 'utf8');
    if (f === 'go.mod') text = text.replace(/^[ \t]*\/\/.*\n/gm, ''); // its comments do not change what is built
    h.update('\0').update(f).update('\0').update(text);
  }
  return h.digest('hex').slice(0, 16);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The collector binary as otel/go.mod pins it; builds it the first time (test files running at once wait for one build). */
export async function ensureCollector(log: Log = stderrLog): Promise<string> {
  const out = join(cacheDir, 'bin', buildHash());
  const binary = join(out, 'otelcol');
  if (existsSync(binary)) return binary;
  mkdirSync(join(out, '..'), { recursive: true });
  const lock = `${out}.lock`;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder = NaN;
      try {
        holder = Number(readFileSync(join(lock, 'pid'), 'utf8'));
      } catch {
        /* being written or removed */
      }
      if (Number.isInteger(holder) && !alive(holder)) rmSync(lock, { recursive: true, force: true });
      else await sleep(2000);
      if (existsSync(binary)) return binary;
    }
  }
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    if (existsSync(binary)) return binary;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const what = `otelcol (go.opentelemetry.io/collector/otelcol ${pinnedVersion(otelModule, 'go.opentelemetry.io/collector/otelcol')}, fileexporter ${pinnedVersion(otelModule, 'github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter')})`;
    log(`otel: building ${what} with ${goVersion()} into ${out} (niced, one compile at a time: the first build takes many minutes)`);
    const started = Date.now();
    const args = [
      '-n',
      '10',
      'go',
      'build',
      '-p',
      '1',
      '-trimpath',
      '-buildvcs=false',
      '-ldflags',
      '-s -w',
      '-o',
      join(tmp, 'otelcol'),
      './cmd/otelcol',
    ];
    await new Promise<void>((resolveBuild, reject) => {
      const child = spawn('nice', args, { cwd: otelModule, stdio: ['ignore', 'ignore', 'pipe'] });
      let text = '';
      child.stderr.on('data', (d) => {
        text += d;
      });
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (code === 0) resolveBuild();
        else reject(new Error(`nice ${args.join(' ')} (in ${otelModule}) failed (${signal ?? `exit ${code}`}):\n${text.trim()}`));
      });
    });
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    const size = statSync(join(tmp, 'otelcol')).size;
    writeFileSync(
      join(tmp, 'build.json'),
      `${JSON.stringify({ what, go: goVersion(), seconds, size, builtAt: new Date().toISOString() }, null, 2)}\n`,
    );
    renameSync(tmp, out);
    const parent = join(out, '..');
    for (const name of readdirSync(parent)) {
      if (/^[0-9a-f]{16}$/.test(name) && join(parent, name) !== out) rmSync(join(parent, name), { recursive: true, force: true });
    }
    log(`otel: built ${what} in ${seconds} s (${(size / 1048576).toFixed(1)} MB)`);
    return binary;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    rmSync(lock, { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface Collector {
  /** OTLP/HTTP base URL: http://127.0.0.1:PORT (traces at /v1/traces). */
  url: string;
  /** The file exporter's output: one ExportTraceServiceRequest in JSON per line. */
  file: string;
  pid: number;
  /** Every span the collector has written so far, with its resource's attributes. */
  spans(): CollectedSpan[];
  stop(): Promise<void>;
}

export interface CollectedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  status?: { code?: number; message?: string };
  flags?: number;
  traceState?: string;
  /** Attributes flattened: key → string, number or boolean. */
  attrs: Record<string, string | number | boolean>;
  resource: Record<string, string | number | boolean>;
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
function flatten(kvs: { key: string; value: AnyValue }[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of kvs ?? []) {
    if (value.stringValue !== undefined) out[key] = value.stringValue;
    else if (value.intValue !== undefined) out[key] = Number(value.intValue);
    else if (value.boolValue !== undefined) out[key] = value.boolValue;
    else if (value.doubleValue !== undefined) out[key] = value.doubleValue;
  }
  return out;
}

/** Reads the file exporter's JSON lines into spans (the collector writes OTLP JSON: ids in hex). */
export function readSpans(file: string): CollectedSpan[] {
  if (!existsSync(file)) return [];
  const out: CollectedSpan[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.pop(); // the collector may be writing the last line: only lines that end are whole
  for (const line of lines) {
    if (line.trim() === '') continue;
    const req = JSON.parse(line) as {
      resourceSpans?: {
        resource?: { attributes?: { key: string; value: AnyValue }[] };
        scopeSpans?: { spans?: (Omit<CollectedSpan, 'attrs' | 'resource'> & { attributes?: { key: string; value: AnyValue }[] })[] }[];
      }[];
    };
    for (const rs of req.resourceSpans ?? []) {
      const resource = flatten(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const sp of ss.spans ?? []) {
          const { attributes, ...rest } = sp;
          out.push({ ...rest, attrs: flatten(attributes), resource });
        }
      }
    }
  }
  return out;
}

/**
 * Starts the collector with its state in dir: OTLP/HTTP on a free loopback port, spans to dir/traces.jsonl.
 * rotateMb: keep the file under that size (one old file kept), for runs that send far more than a test reads.
 */
export async function startCollector(dir: string, log: Log = stderrLog, opts: { rotateMb?: number } = {}): Promise<Collector> {
  const binary = await ensureCollector(log);
  const port = await freePort();
  const file = join(dir, 'traces.jsonl');
  const config = join(dir, 'otelcol.yaml');
  // No telemetry endpoint of its own (it would listen on :8888), spans flushed to the file every 100 ms.
  writeFileSync(
    config,
    `receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${port}
exporters:
  file:
    path: ${file}
    flush_interval: 100ms
${opts.rotateMb ? `    rotation:\n      max_megabytes: ${opts.rotateMb}\n      max_backups: 1\n` : ''}service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`,
  );
  let logText = '';
  const child: ChildProcess = spawn(binary, ['--config', `file:${config}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.setEncoding('utf8').on('data', (d) => {
    logText += d;
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the collector exited (${child.exitCode}) before it was ready:\n${logText.slice(-4000)}`);
    if (/Everything is ready/.test(logText)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the collector was not ready within 30 s:\n${logText.slice(-4000)}`);
    }
    await sleep(50);
  }
  return {
    url,
    file,
    pid: child.pid!,
    spans: () => readSpans(file),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

if (import.meta.main) {
  const [cmd] = process.argv.slice(2);
  if (cmd === 'build') {
    const started = Date.now();
    const bin = await ensureCollector();
    process.stdout.write(`${bin} (checked or built in ${Math.round((Date.now() - started) / 1000)} s)\n`);
  } else {
    process.stderr.write('usage: node scripts/otel.ts build\n');
    process.exit(2);
  }
}
