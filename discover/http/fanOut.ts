// Fan-out writers: threads that write one change's answer to many long-poll waiters at once.
//
// A change that wakes thousands of waiters costs one kernel write per waiter, and on loopback and
// in VMs that write is 12-20 us (the kernel runs the receiver's TCP input and wake-up inside it).
// One event loop writes them in a row, so the last waiter of 1,000 hears 15-20 ms after the first.
// The writer threads and the event loop write the same bytes to the sockets' descriptors together,
// each taking the next few from a shared counter, so the kernel work runs on several cores and a
// thread that gets less CPU (the machine is busy) simply writes fewer.
//
// Safety rests on three rules, each checked by the caller (sendPrebuiltAll):
//  - only an idle plain-TCP socket is handed over: no TLS, nothing queued in Node's or libuv's
//    write queue, so bytes written behind libuv's back cannot be reordered;
//  - the event loop waits (Atomics.wait) until the writers are done before it returns, so no
//    socket can be closed and its descriptor reused while a writer holds it;
//  - whatever a writer could not write (a full socket buffer: EAGAIN, or a short write) is written
//    by the event loop afterwards through the socket as usual; any other error destroys the socket.
import { writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

/**
 * The writer's code: CommonJS, evaluated, so it runs the same from sources and from dist/. It
 * takes writeShare's own text (its types are already gone: stripped by Node or emitted away by tsc).
 * ctl[0]: 1 once the job is done; ctl[1]: how many answers this writer wrote in it.
 */
const WRITER = `
const { parentPort, workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const ctl = new Int32Array(workerData.ctl);
${writeShare.toString()}
parentPort.on('message', (m) => {
  Atomics.store(ctl, 1, writeShare(m.fds, m.wire, m.out, m.next, m.chunk, m.spans));
  Atomics.store(ctl, 0, 1);
  Atomics.notify(ctl, 0);
});
`;

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

interface Writer {
  worker: Worker;
  ctl: Int32Array;
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
      const shared = new SharedArrayBuffer(8);
      const worker = new Worker(WRITER, {
        eval: true,
        workerData: { ctl: shared },
        resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 },
      });
      worker.unref();
      const writer: Writer = { worker, ctl: new Int32Array(shared), online: false };
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
    const next = new Int32Array(new SharedArrayBuffer(4));
    const writers = this.writers.filter((w) => w.online);
    for (const w of writers) {
      Atomics.store(w.ctl, 0, 0);
      w.worker.postMessage({ fds, out, wire, next, chunk: CHUNK, spans });
    }
    if (eventLoopWrites) writeShare(fds, wire, out, next, CHUNK, spans);
    const gone: Promise<void>[] = [];
    for (const w of writers) {
      // A writer that hangs must not hang discover: a second at most, then it leaves the pool.
      if (Atomics.wait(w.ctl, 0, 0, 1000) === 'timed-out') gone.push(this.drop(w));
      else this.writerWrites += Atomics.load(w.ctl, 1);
    }
    return gone.length ? { unfinished: Promise.all(gone).then(() => {}) } : {};
  }

  async close(): Promise<void> {
    this.started = true;
    await Promise.all(this.writers.splice(0).map((w) => w.worker.terminate()));
  }
}
