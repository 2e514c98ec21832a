// Writes a response whose status line, headers and body were serialized once per snapshot version.
// Node's ServerResponse formats and encodes the head on every answer; for a change that wakes
// thousands of long-poll waiters that is most of the cost (measured: docs/performance.md, "Choices
// in the code, measured"). The fast path writes the prebuilt bytes and then lets ServerResponse finish as if
// it had sent them, so keep-alive, pipelining and 'finish' bookkeeping stay Node's own.
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { UNWRITTEN, type FanOutJob, type FanOutWriters } from './fanOut.ts';

export interface Prebuilt {
  status: number;
  headers: string[];
  body: Buffer;
  wire: Buffer;
}

export function prebuild(status: number, reason: string, headers: string[], body: Buffer): Prebuilt {
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  head += 'connection: keep-alive\r\n\r\n';
  return { status, headers, body, wire: Buffer.concat([Buffer.from(head, 'latin1'), body]) };
}

type Internals = ServerResponse & { _header: string | null; _headerSent: boolean };

/** Whether ServerResponse is in the state the prebuilt bytes rely on (nothing sent yet, HTTP/1.1 keep-alive). */
function canWriteWire(res: ServerResponse): boolean {
  const socket = res.socket;
  return (
    (res as Internals)._header === null &&
    res.shouldKeepAlive &&
    socket !== null &&
    !socket.destroyed &&
    (socket as unknown as { _httpMessage: unknown })._httpMessage === res &&
    res.req.method !== 'HEAD' &&
    res.req.httpVersionMajor === 1 &&
    res.req.httpVersionMinor === 1
  );
}

/** Tells ServerResponse its head (and body) went out, so end() finishes it without writing. */
function markWritten(res: ServerResponse): void {
  (res as Internals)._header = 'prebuilt';
  (res as Internals)._headerSent = true;
}

/** Writes the prebuilt bytes and marks the head sent, if ServerResponse is in the state this relies on. */
function writeWire(res: ServerResponse, p: Prebuilt): boolean {
  if (!canWriteWire(res)) return false;
  res.socket!.write(p.wire);
  markWritten(res);
  return true;
}

export function sendPrebuilt(res: ServerResponse, p: Prebuilt): void {
  if (writeWire(res, p)) {
    res.end();
    return;
  }
  // Otherwise the ordinary path.
  res.writeHead(p.status, p.headers);
  res.end(p.body);
}

/** Below this many waiters, handing sockets to writer threads costs more than it saves. */
export const FAN_OUT_MIN = 64;

/** The descriptor of an idle plain-TCP socket (nothing queued, not TLS), or -1. */
function idleFd(socket: Socket): number {
  if ((socket as { encrypted?: boolean }).encrypted || socket.writableLength !== 0 || socket.pending) return -1;
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/**
 * The same answer to many waiters: every socket's bytes go out first, then ServerResponse finishes
 * each one (its end() and 'finish' bookkeeping costs about as much as the write). The last waiter's
 * answer leaves sooner (measured: docs/performance.md, "Choices in the code, measured").
 * With fan-out writers, this thread and the writer threads write the idle plain-TCP sockets'
 * answers together (see fanOut.ts), so the kernel's per-socket work runs on several cores.
 */
export function sendPrebuiltAll(list: ServerResponse[], p: Prebuilt, fanOut?: FanOutWriters): void {
  sendPrebuiltEach(
    list,
    list.map(() => p),
    fanOut,
  );
}

/**
 * Like sendPrebuiltAll, with each waiter's own answer: one change wakes the waiters of many apps
 * (the dependents of a Service), and together they are enough to share out to the writer threads
 * even when each app has only a few. list[i] gets answers[i].
 */
export function sendPrebuiltEach(list: ServerResponse[], answers: Prebuilt[], fanOut?: FanOutWriters): void {
  const batches: Batch[] = [];
  if (fanOut !== undefined && fanOut.threads > 0 && list.length >= FAN_OUT_MIN)
    batches.push(postBatch(list, answers, 0, list.length, fanOut));
  finishAnswers(list, answers, batches, fanOut);
}

/** Waiters whose answers were handed to the writer threads (fanOut.ts post). */
interface Batch {
  /** The waiters handed over (indexes into list), in the job's order. */
  idx: number[];
  job: FanOutJob | undefined;
}

/** Hands the idle plain-TCP sockets among list[from, to) to the writers, without waiting for them. */
function postBatch(list: ServerResponse[], answers: Prebuilt[], from: number, to: number, fanOut: FanOutWriters): Batch {
  const idx: number[] = [];
  const fdList: number[] = [];
  for (let i = from; i < to; i++) {
    const res = list[i];
    if (res.destroyed || !canWriteWire(res)) continue;
    const fd = idleFd(res.socket!);
    if (fd < 0) continue;
    idx.push(i);
    fdList.push(fd);
  }
  if (idx.length === 0) return { idx, job: undefined };
  const fds = new Int32Array(new SharedArrayBuffer(fdList.length * 4));
  fds.set(fdList);
  const out = new Int32Array(new SharedArrayBuffer(fdList.length * 4)).fill(UNWRITTEN);
  let wire: Uint8Array = answers[idx[0]].wire;
  let spans: Int32Array | undefined;
  if (idx.some((i) => answers[i] !== answers[idx[0]])) {
    // Several answers: each distinct one copied once into shared memory, and a span per descriptor.
    const at = new Map<Prebuilt, number>();
    let size = 0;
    for (const i of idx)
      if (!at.has(answers[i])) {
        at.set(answers[i], size);
        size += answers[i].wire.length;
      }
    const shared = new Uint8Array(new SharedArrayBuffer(size));
    for (const [a, offset] of at) shared.set(a.wire, offset);
    wire = shared;
    spans = new Int32Array(new SharedArrayBuffer(idx.length * 8));
    for (let k = 0; k < idx.length; k++) {
      spans[2 * k] = at.get(answers[idx[k]])!;
      spans[2 * k + 1] = answers[idx[k]].wire.length;
    }
  }
  return { idx, job: fanOut.post(wire, fds, out, spans) };
}

/**
 * Joins the batches handed to the writers (the event loop writes what is left of each, then waits
 * for the writers), finishes what they could not write, writes every other waiter's answer, and
 * only then lets ServerResponse finish each one (its end() and 'finish' bookkeeping costs about as
 * much as the write, so every answer leaves first).
 */
function finishAnswers(list: ServerResponse[], answers: Prebuilt[], batches: Batch[], fanOut: FanOutWriters | undefined): void {
  // Per waiter: 0 not yet written, 1 written (end() finishes it), 2 left alone (closed later).
  const state = new Uint8Array(list.length);
  const jobs = batches.flatMap((b) => (b.job ? [b.job] : []));
  const { unfinished } = jobs.length > 0 ? fanOut!.join(jobs) : {};
  for (const { idx, job } of batches) {
    if (!job) continue;
    const out = job.out;
    for (let k = 0; k < out.length; k++) {
      const i = idx[k];
      const res = list[i];
      const p = answers[i];
      const n = out[k];
      if (n === p.wire.length) {
        markWritten(res);
        state[i] = 1;
      } else if (n === UNWRITTEN) {
        // Claimed by a writer that did not finish: whether these bytes went is unknown, so the
        // connection goes (once the writer is gone) rather than risk a second copy; the sidecar
        // reconnects and polls again.
        state[i] = 2;
        void unfinished?.then(() => res.socket?.destroy());
      } else if (n < 0) {
        state[i] = 2;
        res.socket!.destroy();
      } else {
        // A full socket buffer (0) or a short write: the rest goes through the socket as usual.
        res.socket!.write(n === 0 ? p.wire : p.wire.subarray(n));
        markWritten(res);
        state[i] = 1;
      }
    }
  }
  for (let i = 0; i < list.length; i++) if (state[i] === 0 && !list[i].destroyed && writeWire(list[i], answers[i])) state[i] = 1;
  for (let i = 0; i < list.length; i++) {
    const res = list[i];
    if (state[i] === 1) res.end();
    else if (state[i] === 0 && !res.destroyed) sendPrebuilt(res, answers[i]);
  }
}

/** Waiters gathered before a batch of theirs goes to the writer threads (AnswerBatches). */
export const FAN_OUT_BATCH = FAN_OUT_MIN;

/**
 * The answers of one change that rebuilds many apps, handed to the writer threads in batches as
 * the apps are built: the writers answer the first apps' waiters while the event loop builds the
 * next ones, instead of every answer waiting for the last app. finish() joins them all and answers
 * the rest exactly as sendPrebuiltEach does; it must run before the event loop returns to its loop
 * (also when the build throws), or a socket could be closed while a writer holds its descriptor.
 * Below FAN_OUT_BATCH waiters in all (at least FAN_OUT_MIN), or without writers online, nothing
 * goes early and finish() is sendPrebuiltEach. Between add() and finish() nothing may write to or
 * close the waiters' sockets (apply() runs synchronously, so nothing else can).
 */
export class AnswerBatches {
  readonly list: ServerResponse[] = [];
  readonly answers: Prebuilt[] = [];
  private readonly fanOut: FanOutWriters | undefined;
  private readonly batchSize: number;
  private readonly batches: Batch[] = [];
  /** list[0, posted) is handed out. */
  private posted = 0;
  private finished = false;

  constructor(fanOut: FanOutWriters | undefined, batchSize = FAN_OUT_BATCH) {
    this.fanOut = fanOut;
    this.batchSize = Math.max(FAN_OUT_MIN, batchSize);
  }

  get size(): number {
    return this.list.length;
  }

  /** How many batches went to the writers early (before finish). */
  get early(): number {
    return this.batches.length;
  }

  add(res: ServerResponse, answer: Prebuilt): void {
    if (this.finished) throw new Error('AnswerBatches: add() after finish()');
    this.list.push(res);
    this.answers.push(answer);
  }

  /** Hands the waiters added since the last batch to the writers if they are enough for one. */
  flush(): void {
    const fanOut = this.fanOut;
    if (this.list.length - this.posted < this.batchSize || fanOut === undefined || fanOut.threads === 0) return;
    this.batches.push(postBatch(this.list, this.answers, this.posted, this.list.length, fanOut));
    this.posted = this.list.length;
  }

  /** Answers every waiter added (see the class). Once only. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.batches.length === 0) return sendPrebuiltEach(this.list, this.answers, this.fanOut);
    if (this.posted < this.list.length) this.batches.push(postBatch(this.list, this.answers, this.posted, this.list.length, this.fanOut!));
    this.posted = this.list.length;
    finishAnswers(this.list, this.answers, this.batches, this.fanOut);
  }
}
