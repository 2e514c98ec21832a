// The reference HTTP/1 parser for differential tests: Node's own llhttp binding, the parser node:http
// runs, initialized as node:http initializes it (no lenient flags, 16 KiB header limit). It is an
// internal binding, so it runs in a child process started with --expose-internals
// (test/lib/llhttpWorker.ts); cases go over stdin/stdout as JSON lines, many per message.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export type Mode = 'request' | 'response';

/** One message as llhttp saw it. Header names and values are latin1 strings, as node:http gives them. */
export interface LlMessage {
  versionMajor: number;
  versionMinor: number;
  /** Request mode: the method name (llhttp only knows a fixed list). */
  method?: string;
  /** Request mode: the request-target as llhttp delimited it. */
  url?: string;
  /** Response mode. */
  statusCode?: number;
  statusMessage?: string;
  /** Flat [name, value, ...] as sent (llhttp trims leading and trailing SP/HTAB of values). */
  headers: string[];
  upgrade: boolean;
  shouldKeepAlive: boolean;
  /** The body bytes llhttp delivered (decoded from chunked framing), latin1. */
  body: string;
  /** The message ended (its body, if any, is complete). */
  complete: boolean;
}

export interface LlResult {
  messages: LlMessage[];
  /** llhttp's error code (HPE_*), or null when every byte was accepted. */
  error: string | null;
  reason: string | null;
  /** Bytes consumed before the error (or all of them). */
  bytesParsed: number;
  /** The input ended cleanly (finish() raised nothing): e.g. no half message. */
  finishError: string | null;
}

export interface ParseCase {
  mode: Mode;
  /** The bytes, latin1. */
  data: string;
  /** Response mode: the method of the request this answers (HEAD responses have no body). */
  requestMethod?: string;
}

/** The reference parser in a child process; close() when done. */
export class Llhttp {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: ((r: LlResult[]) => void)[] = [];
  private readonly failed: Promise<never>;

  constructor() {
    const worker = fileURLToPath(new URL('./llhttpWorker.ts', import.meta.url));
    this.child = spawn(process.execPath, ['--expose-internals', '--no-warnings', worker], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    this.child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    this.failed = new Promise<never>((_, reject) => {
      this.child.on('exit', (code) => reject(new Error(`llhttp worker exited (${code}): ${stderr.trim()}`)));
    });
    this.failed.catch(() => {});
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      this.waiting.shift()?.(JSON.parse(line) as LlResult[]);
    });
  }

  /** Parses every case, in order. */
  parseAll(cases: ParseCase[]): Promise<LlResult[]> {
    const p = new Promise<LlResult[]>((resolve) => this.waiting.push(resolve));
    this.child.stdin.write(`${JSON.stringify(cases)}\n`);
    return Promise.race([p, this.failed]);
  }

  async parse(c: ParseCase): Promise<LlResult> {
    return (await this.parseAll([c]))[0];
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}
