// Children a benchmark starts, and what the harness reads about them from /proc: every process is
// started here on loopback and stopped by the group that started it.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/** Prefixes a command with `taskset -c CPUS` when cpus is given. */
export function pinned(cpus: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpus === undefined ? [cmd, args] : ['taskset', ['-c', cpus, cmd, ...args]];
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** CPU seconds (user + system) the process has used, from /proc (clock ticks of 1/100 s). */
export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Resident, peak resident and private (anonymous) resident memory in MB, from /proc. RSS counts
 * the node binary's file-backed pages (shared by every Node process on the machine); anon does not.
 */
export function memMb(pid: number): { rss: number; peak: number; anon: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+([0-9]+) kB`).exec(s)?.[1] ?? NaN);
  return {
    rss: Math.round(kb('VmRSS') / 102.4) / 10,
    peak: Math.round(kb('VmHWM') / 102.4) / 10,
    anon: Math.round(kb('RssAnon') / 102.4) / 10,
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitHttp(url: string, tries = 100): Promise<void> {
  let last = '';
  for (let i = 0; i < tries; i++) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`${url} did not come up (${last})`);
}

/** The processes one scenario started; stop() ends them all (SIGTERM, then SIGKILL). */
export class ProcessGroup {
  readonly children: ChildProcess[] = [];

  spawn(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], ...opts });
    child.on('error', () => {}); // a missing binary is reported by whoever waits for the child
    this.children.push(child);
    return child;
  }

  /** Starts a child that prints one JSON line when ready; resolves with that line. */
  jsonChild(cmd: string, args: string[], opts: SpawnOptions = {}): Promise<{ child: ChildProcess; info: Record<string, number> }> {
    const child = this.spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'inherit'] });
    return new Promise((resolve, reject) => {
      let out = '';
      let ready = false;
      let later = 0;
      child.stdout!.on('data', (d) => {
        if (ready) {
          // What a child says after it is ready (its warnings, say): the first few lines, on stderr.
          for (const line of String(d).split('\n').filter(Boolean))
            if (later++ < 5) process.stderr.write(`[${child.pid}] ${line.slice(0, 400)}\n`);
          return;
        }
        out += d;
        let nl;
        while (!ready && (nl = out.indexOf('\n')) >= 0) {
          const line = out.slice(0, nl);
          out = out.slice(nl + 1);
          let info: Record<string, number>;
          try {
            info = JSON.parse(line) as Record<string, number>;
          } catch {
            reject(new Error(`${cmd} ${args.join(' ')}: expected a JSON ready line, got ${JSON.stringify(line.slice(0, 200))}`));
            return;
          }
          // A log line the child wrote before it was ready (a shoal process logs JSON to stdout too):
          // passed on to stderr; the ready line is the first one that is not a log line.
          if ('level' in info && 'msg' in info) {
            process.stderr.write(`[${child.pid}] ${line.slice(0, 400)}\n`);
            continue;
          }
          ready = true;
          resolve({ child, info });
        }
      });
      child.once('error', (err) => reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}`)));
      // 'close', not 'exit': a child that prints its line and exits at once (the burst client) can be
      // reported exited before its output was read; 'close' comes after stdout has ended.
      child.once('close', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out}`)));
    });
  }

  /** Starts a child that prints "port N" when ready. */
  portChild(cmd: string, args: string[]): Promise<{ child: ChildProcess; port: number }> {
    const child = this.spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    return new Promise((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (c) => {
        out += c;
        const m = /port ([0-9]+)/.exec(out);
        if (m) resolve({ child, port: Number(m[1]) });
      });
      child.once('error', (err) => reject(new Error(`${cmd}: ${err.message}`)));
      child.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`)));
    });
  }

  async stop(): Promise<void> {
    const alive = this.children.filter((c) => c.exitCode === null && c.signalCode === null && c.pid !== undefined);
    for (const c of alive) c.kill('SIGTERM');
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && alive.some((c) => c.exitCode === null && c.signalCode === null)) await sleep(25);
    for (const c of alive) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    this.children.length = 0;
  }
}

/** The next IPC message of this type from a child; rejects if the child exits first. */
export function onceMessage<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const on = (msg: { type: string }) => {
      if (msg.type === type) {
        child.off('message', on);
        child.off('exit', onExit);
        resolve(msg as T);
      }
    };
    const onExit = (code: number | null) => reject(new Error(`client process exited (${code}) while waiting for ${type}`));
    child.on('message', on);
    child.once('exit', onExit);
  });
}
