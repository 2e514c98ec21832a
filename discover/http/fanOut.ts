// Fan-out writers: threads that write one change's answer to many long-poll waiters at once.
//
// A change that wakes thousands of waiters costs one kernel write per waiter, and on loopback and
// in VMs that write is 12-20 us (the kernel runs the receiver's TCP input and wake-up inside it).
// One event loop writes them in a row, so the last waiter of 1,000 hears 15-20 ms after the first.
// The writer threads and the event loop write the same bytes to the sockets' descriptors together,
// each taking the next few from a shared counter, so the kernel work runs on several cores and a
// thread that gets less CPU (the machine is busy) simply writes fewer.
//
// A change that rebuilds many apps hands the answers out in jobs as the apps are built (post), so
// the writers answer the first apps' waiters while the event loop still builds the next ones, and
// joins them all at the end (join): the event loop writes what is left of every job, then waits.
//
// Safety rests on three rules, each checked by the caller (sendPrebuiltEach, AnswerBatches):
//  - only an idle plain-TCP socket is handed over: no TLS, nothing queued in Node's or libuv's
//    write queue, so bytes written behind libuv's back cannot be reordered;
//  - the event loop waits (Atomics.wait) until the writers are done with every job it posted
//    before it returns to its loop, so no socket can be closed and its descriptor reused while a
//    writer holds it;
//  - whatever a writer could not write (a full socket buffer: EAGAIN, or a short write) is written
//    by the event loop afterwards through the socket as usual; any other error destroys the socket.
import { writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/**
 * The writer's code: CommonJS, evaluated, so it runs the same from sources and from dist/. It
 * takes writeShare's own text (its types are already gone: stripped by Node or emitted away by tsc).
 * Each job carries its own flags (several jobs can be outstanding; a writer runs them in order):
 * done[2 * slot]: 1 once this writer is done with the job; done[2 * slot + 1]: how many answers it
 * wrote in it. A `stallMs` message makes the writer stop for that long (tests: a writer that hangs).
 */
const WRITER = `
const { parentPort } = require('node:worker_threads');
const { writeSync } = require('node:fs');
${writeShare.toString()}
parentPort.on('message', (m) => {
  if (m.stallMs) return void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, m.stallMs);
  Atomics.store(m.done, 2 * m.slot + 1, writeShare(m.fds, m.wire, m.out, m.next, m.chunk, m.spans));
  Atomics.store(m.done, 2 * m.slot, 1);
  Atomics.notify(m.done, 2 * m.slot);
});
`;

/** How long the event loop waits for the writers at a join before it drops the ones not done. */
const HANG_MS = 1000;

/** out[i] before anyone wrote to fds[i]. */
export const UNWRITTEN = -2;

/** Answers a thread claims at a time from the shared counter. */
const CHUNK = 8;

/**
 * Claims CHUNK descriptors at a time from the shared counter `next` and write(2)s wire to each,
 * until none are left; every thread of a job runs it, so a thread that gets less CPU writes fewer.
 * With spans, descriptor i gets its own part of wire: spans[2i] bytes in, spans[2i+1] long (one job
 * answers the waiters of many apps, each with its app's answer). out[i]: bytes written, 0 for a
 * full socket buffer, -1 for a broken socket. Returns how many this thread wrote.
 */
export function writeShare(
  fds: Int32Array,
  wire: Uint8Array,
  out: Int32Array,
  next: Int32Array,
  chunk: number,
  spans?: Int32Array | null,
): number {
  let mine = 0;
  for (;;) {
    const from = Atomics.add(next, 0, chunk);
    if (from >= fds.length) return mine;
    const to = Math.min(from + chunk, fds.length);
    for (let i = from; i < to; i++) {
      try {
        out[i] = spans ? writeSync(fds[i], wire, spans[2 * i], spans[2 * i + 1]) : writeSync(fds[i], wire, 0, wire.length);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        out[i] = code === 'EAGAIN' || code === 'EWOULDBLOCK' ? 0 : -1;
      }
    }
    mine += to - from;
  }
}

/** A job handed to the writers (post), until it is joined (join). */
export interface FanOutJob {
  wire: Uint8Array;
  fds: Int32Array;
  out: Int32Array;
  spans: Int32Array | undefined;
  /** The shared claim counter. */
  next: Int32Array;
  /** Per writer of the job (its slot): done flag and count, see WRITER. */
  done: Int32Array;
  writers: Writer[];
}

interface Writer {
  worker: Worker;
  /** Running its code (the 'online' event): before that a job would wait for the thread to boot. */
  online: boolean;
}

export class FanOutWriters {
  private writers: Writer[] = [];
  private readonly wanted: number;
  /** Answers the writer threads wrote, over the process's life. */
  writerWrites = 0;
  private started = false;

  /** `threads` writers, started by start() (discover starts them once it holds enough waiters). */
  constructor(threads: number) {
    this.wanted = threads;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.wanted; i++) {
      const worker = new Worker(WRITER, {
        eval: true,
        resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 },
      });
      worker.unref();
      const writer: Writer = { worker, online: false };
      worker.once('online', () => (writer.online = true));
      // A writer that fails leaves the pool; the event loop writes its share itself from then on.
      worker.once('exit', () => void this.drop(writer));
      worker.once('error', () => void this.drop(writer));
      this.writers.push(writer);
    }
  }

  get isStarted(): boolean {
    return this.started;
  }

  /** Writers ready for a job now. */
  get threads(): number {
    let n = 0;
    for (const w of this.writers) if (w.online) n++;
    return n;
  }

  private drop(writer: Writer): Promise<void> {
    this.writers = this.writers.filter((w) => w !== writer);
    return writer.worker.terminate().then(
      () => {},
      () => {},
    );
  }

  /**
   * Writes wire to every descriptor of fds, this thread and the ready writers together, each
   * claiming the next few from a shared counter; returns once all are done. fds and out must be
   * shared memory; out starts filled with UNWRITTEN. `unfinished` is set when a writer did not
   * finish within a second: its last claimed descriptors may or may not have been written (out
   * still UNWRITTEN). It resolves once that thread is gone; only then may their sockets be closed
   * (a closed descriptor's number can be reused at once by a new connection, which a late write
   * would then corrupt). `eventLoopWrites: false` leaves all the writing to the writers (tests
   * use it to check their path on its own). With spans (see writeShare), each descriptor gets its
   * own part of wire; wire and spans are then shared memory too.
   */
  run(wire: Uint8Array, fds: Int32Array, out: Int32Array, eventLoopWrites = true, spans?: Int32Array): { unfinished?: Promise<void> } {
    return this.join([this.post(wire, fds, out, spans)], eventLoopWrites);
  }

  /**
   * Hands a job (as run() takes it) to the ready writers and returns at once: they start writing
   * while the event loop goes on. Every job posted must be joined (join) before the event loop
   * returns to its loop, and none of its sockets touched meanwhile.
   */
  post(wire: Uint8Array, fds: Int32Array, out: Int32Array, spans?: Int32Array): FanOutJob {
    const writers = this.writers.filter((w) => w.online);
    const job: FanOutJob = {
      wire,
      fds,
      out,
      spans,
      next: new Int32Array(new SharedArrayBuffer(4)),
      done: new Int32Array(new SharedArrayBuffer(Math.max(1, writers.length) * 8)),
      writers,
    };
    writers.forEach((w, slot) => w.worker.postMessage({ fds, out, wire, next: job.next, chunk: CHUNK, spans, done: job.done, slot }));
    return job;
  }

  /**
   * Finishes the jobs posted: the event loop writes what is left of each (unless
   * `eventLoopWrites: false`), then waits for the writers, a second in all at most: a writer not
   * done by then leaves the pool, and `unfinished` (see run) resolves once it is gone.
   */
  join(jobs: FanOutJob[], eventLoopWrites = true): { unfinished?: Promise<void> } {
    // First every job's counter runs out, so a writer late to a job finds nothing left to claim.
    if (eventLoopWrites) for (const job of jobs) writeShare(job.fds, job.wire, job.out, job.next, CHUNK, job.spans);
    const deadline = performance.now() + HANG_MS;
    const hung = new Set<Writer>();
    const gone: Promise<void>[] = [];
    for (const job of jobs)
      job.writers.forEach((w, slot) => {
        // A writer not done with an earlier job has not started this one (it runs them in order).
        if (hung.has(w)) return;
        // A writer that hangs must not hang discover: a second at most, then it leaves the pool.
        if (Atomics.wait(job.done, 2 * slot, 0, Math.max(0, deadline - performance.now())) === 'timed-out') {
          hung.add(w);
          gone.push(this.drop(w));
        } else this.writerWrites += Atomics.load(job.done, 2 * slot + 1);
      });
    return gone.length ? { unfinished: Promise.all(gone).then(() => {}) } : {};
  }

  /** Tests: every writer stops for `ms` before its next job, as a writer that hangs would. */
  stallForTest(ms: number): void {
    for (const w of this.writers) w.worker.postMessage({ stallMs: ms });
  }

  async close(): Promise<void> {
    this.started = true;
    await Promise.all(this.writers.splice(0).map((w) => w.worker.terminate()));
  }
}
