// Long-poll waiters: one set per app, woken once per change, and one timer wheel for all deadlines.
// Waiting costs a small object per client; a change costs one pass over that app's waiters.
import type { ServerResponse } from 'node:http';

export interface Waiter {
  key: string;
  res: ServerResponse;
  deadlineTick: number;
}

const TICK_MS = 20;
const WAITER = Symbol('shoal.waiter');
type TaggedResponse = ServerResponse & { [WAITER]?: Waiter; [OWNER]?: LongPollRegistry };
const OWNER = Symbol('shoal.longpoll');

function onClose(this: TaggedResponse): void {
  const w = this[WAITER];
  if (w) this[OWNER]?.remove(w);
}

export class LongPollRegistry {
  private readonly byKey = new Map<string, Set<Waiter>>();
  private readonly wheel = new Map<number, Set<Waiter>>();
  private timer: NodeJS.Timeout | null = null;
  private lastTick = 0;
  private count = 0;
  private readonly onExpire: (w: Waiter) => void;

  constructor(onExpire: (w: Waiter) => void) {
    this.onExpire = onExpire;
  }

  get size(): number {
    return this.count;
  }

  add(key: string, res: ServerResponse, waitMs: number): void {
    const deadlineTick = Math.ceil((performance.now() + waitMs) / TICK_MS);
    const w: Waiter = { key, res, deadlineTick };
    let set = this.byKey.get(key);
    if (!set) this.byKey.set(key, (set = new Set()));
    set.add(w);
    let bucket = this.wheel.get(deadlineTick);
    if (!bucket) this.wheel.set(deadlineTick, (bucket = new Set()));
    bucket.add(w);
    this.count++;
    const tagged = res as TaggedResponse;
    tagged[WAITER] = w;
    // The listener stays when the waiter is answered (onClose then finds no waiter): a response
    // waits once, and taking it off again costs a search of its listeners per waiter woken.
    if (tagged[OWNER] !== this) res.on('close', onClose);
    tagged[OWNER] = this;
    if (!this.timer) {
      this.lastTick = Math.floor(performance.now() / TICK_MS);
      this.timer = setInterval(() => this.sweep(), TICK_MS);
      this.timer.unref();
    }
  }

  remove(w: Waiter): boolean {
    const set = this.byKey.get(w.key);
    if (!set || !set.delete(w)) return false;
    if (set.size === 0) this.byKey.delete(w.key);
    const bucket = this.wheel.get(w.deadlineTick);
    if (bucket) {
      bucket.delete(w);
      if (bucket.size === 0) this.wheel.delete(w.deadlineTick);
    }
    this.count--;
    (w.res as TaggedResponse)[WAITER] = undefined;
    return true;
  }

  /** Takes every waiter of one app; the caller answers them. */
  take(key: string): Waiter[] {
    const set = this.byKey.get(key);
    if (!set) return [];
    const out = [...set];
    for (const w of out) this.remove(w);
    return out;
  }

  waiting(key: string): number {
    return this.byKey.get(key)?.size ?? 0;
  }

  private sweep(): void {
    const now = Math.floor(performance.now() / TICK_MS);
    for (let t = this.lastTick; t <= now; t++) {
      const bucket = this.wheel.get(t);
      if (!bucket) continue;
      for (const w of [...bucket]) {
        this.remove(w);
        this.onExpire(w);
      }
    }
    this.lastTick = now;
    if (this.count === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const key of [...this.byKey.keys()]) {
      for (const w of this.take(key)) this.onExpire(w);
    }
  }
}
