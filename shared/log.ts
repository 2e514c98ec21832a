// One log format for every piece: JSON lines on stdout, as pino writes them
// ({"level":30,"time":<ms>,"piece":"proxy","name":"shoal-proxy",...fields,"msg":"..."}).
// The sidecar and the DNS responder write them with the small writer below: pino, with the
// worker-thread transport machinery it loads, costs a sidecar megabytes of resident memory
// (measured: docs/performance.md, "Choices in the code, measured"), and a sidecar runs in
// every pod. discover, one per cluster, logs through pino (discover/log.ts), in the same format.

export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

/** What the pieces log through: pino's logger fits it, and so does createLogger's. */
export interface Logger {
  level: string;
  isLevelEnabled(level: string): boolean;
  child(bindings: Record<string, unknown>): Logger;
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
}

/** Where lines go: anything with write(string). */
export interface LogSink {
  write(line: string): unknown;
}

export const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };
const NAMES = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

/**
 * Lines written in one turn of the event loop go out in one write at the end of it (an access log
 * at thousands of requests per second costs one write per turn, not one per line); error and fatal
 * lines, and whatever is pending when the process exits, go out at once. process.stdout writes
 * synchronously to files, terminals and pipes on Linux.
 */
class StdoutSink implements LogSink {
  private pending = '';
  private scheduled = false;
  private hooked = false;

  write(line: string): void {
    this.pending += line;
    if (this.scheduled) return;
    this.scheduled = true;
    if (!this.hooked) {
      this.hooked = true;
      process.once('exit', () => this.flush());
    }
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    const out = this.pending;
    if (out === '') return;
    this.pending = '';
    process.stdout.write(out);
  }
}

const stdout = new StdoutSink();

function value(v: unknown): string {
  if (v instanceof Error) {
    const e: Record<string, unknown> = { type: v.name, message: v.message, stack: v.stack };
    const code = (v as NodeJS.ErrnoException).code;
    if (code !== undefined) e.code = code;
    return JSON.stringify(e);
  }
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- JSON.stringify returns undefined for undefined, functions and symbols
  return JSON.stringify(v) ?? 'null';
}

/** Appends an object's defined fields as `,"k":v` (the bindings and the fields of one line). */
function fields(obj: object): string {
  let out = '';
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || typeof v === 'function') continue;
    out += `,${JSON.stringify(k)}:${value(v)}`;
  }
  return out;
}

const noop: LogFn = () => {};

class JsonLogger implements Logger {
  private threshold: number;
  private name: string;
  private readonly bound: string;
  private readonly sink: LogSink;
  trace: LogFn = noop;
  debug: LogFn = noop;
  info: LogFn = noop;
  warn: LogFn = noop;
  error: LogFn = noop;
  fatal: LogFn = noop;

  constructor(level: string, bound: string, sink: LogSink) {
    this.bound = bound;
    this.sink = sink;
    this.threshold = LEVELS.info;
    this.name = 'info';
    this.level = level;
  }

  get level(): string {
    return this.name;
  }

  /** Disabled levels are no-ops, so a debug line costs nothing when it is off. */
  set level(name: string) {
    const threshold = LEVELS[name];
    if (threshold === undefined)
      throw new Error(`unknown log level ${JSON.stringify(name)}: expected one of ${Object.keys(LEVELS).join(', ')}`);
    this.threshold = threshold;
    this.name = name;
    for (const n of NAMES) {
      const number = LEVELS[n];
      this[n] = number >= threshold ? (((a: object | string, msg?: string) => this.write(number, a, msg)) as LogFn) : noop;
    }
  }

  isLevelEnabled(level: string): boolean {
    const n = LEVELS[level];
    return n !== undefined && n !== Infinity && n >= this.threshold;
  }

  child(bindings: Record<string, unknown>): Logger {
    return new JsonLogger(this.name, this.bound + fields(bindings), this.sink);
  }

  private write(level: number, a: object | string, msg?: string): void {
    let line = `{"level":${level},"time":${Date.now()}${this.bound}`;
    if (typeof a === 'string') msg = a;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a caller's cast can hand null: logging must not throw
    else if (a !== null && typeof a === 'object') line += fields(a);
    if (msg !== undefined) line += `,"msg":${JSON.stringify(String(msg))}`;
    this.sink.write(`${line}}\n`);
    if (level >= LEVELS.error && this.sink === stdout) stdout.flush();
  }
}

/** A logger for one piece (proxy, dns, ...): JSON lines on stdout, or into `sink`. */
export function createLogger(piece: string, level: string = process.env.SHOAL_LOG_LEVEL ?? 'info', sink: LogSink = stdout): Logger {
  return new JsonLogger(level, fields({ piece, name: `shoal-${piece}` }), sink);
}
