// Fan-out writers: threads that write one change's answer to many long-poll waiters at once.
//
// A change that wakes thousands of waiters costs one kernel write per waiter, and on loopback and
// in VMs that write is 12-20 us (the kernel runs the receiver's TCP input and wake-up inside it).
// One event loop writes them in a row, so the last waiter of 1,000 hears 15-20 ms after the first.
// A writer thread takes a share of the sockets' descriptors and write(2)s the same bytes to them
// while the event loop writes its own share: the kernel work runs on another core.
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
 * takes writeEach's own text (its types are already gone: stripped by Node or emitted away by tsc).
 */
const WRITER = `
const { parentPort, workerData } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const ctl = new Int32Array(workerData.ctl);
${writeEach.toString()}
parentPort.on('message', (m) => {
  writeEach(m.fds, m.wire, m.out);
  Atomics.store(ctl, 0, 1);
  Atomics.notify(ctl, 0);
});
`;

/** write(2)s wire to each descriptor; out[i]: bytes written, 0 for a full socket buffer, -1 for a broken socket. */
export function writeEach(fds: Int32Array, wire: Uint8Array, out: Int32Array): void {
  for (let i = 0; i < fds.length; i++) {
    try {
      out[i] = writeSync(fds[i], wire, 0, wire.length);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      out[i] = code === 'EAGAIN' || code === 'EWOULDBLOCK' ? 0 : -1;
    }
  }
}

export interface FanOutJob {
  /** Descriptors to write to. */
  fds: Int32Array;
  /** Filled in by the writer: bytes written to each, or -1 for a broken socket. */
  out: Int32Array;
  /**
   * Set when the writer did not finish in time: which of its writes happened is unknown. Resolves
   * once that thread is gone; only then may its sockets be closed (a closed descriptor's number
   * can be reused at once by a new connection, which a late write would then corrupt).
   */
  unfinished?: Promise<void>;
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
  /** Answers handed to the writer threads, over the process's life. */
  handedOut = 0;
  private started = false;

  /** `threads` writers, started by start() (discover starts them once it holds enough waiters). */
  constructor(threads: number) {
    this.wanted = threads;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.wanted; i++) {
      const shared = new SharedArrayBuffer(4);
      const worker = new Worker(WRITER, { eval: true, workerData: { ctl: shared }, resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 } });
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
    return writer.worker.terminate().then(() => {}, () => {});
  }

  /**
   * Hands each writer one job (job i to writer i); `own` then runs on this thread while they
   * write; returns once every writer is done. The jobs' `out` arrays are shared memory.
   */
  run(wire: Buffer, fdLists: Int32Array[], own: () => void): FanOutJob[] {
    const jobs: FanOutJob[] = [];
    const writers = this.writers.filter((w) => w.online);
    for (let i = 0; i < fdLists.length; i++) {
      const w = writers[i];
      const out = new Int32Array(new SharedArrayBuffer(fdLists[i].length * 4));
      Atomics.store(w.ctl, 0, 0);
      w.worker.postMessage({ fds: fdLists[i], out, wire });
      jobs.push({ fds: fdLists[i], out });
      this.handedOut += fdLists[i].length;
    }
    own();
    for (let i = 0; i < jobs.length; i++) {
      // A writer that hangs must not hang discover: after a second its job counts as unfinished
      // (the caller closes those sockets once the thread is gone) and it leaves the pool.
      if (Atomics.wait(writers[i].ctl, 0, 0, 1000) === 'timed-out') jobs[i].unfinished = this.drop(writers[i]);
    }
    return jobs;
  }

  async close(): Promise<void> {
    this.started = true;
    await Promise.all(this.writers.splice(0).map((w) => w.worker.terminate()));
  }
}
