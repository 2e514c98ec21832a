// A small cluster of network namespaces on a bridge, for the end-to-end suite.
//
// Every name carries a per-run prefix `shoal-e2e-<pid>-<tag><rand>`: the pid says which test process
// owns it (leftovers of a dead one are cleaned at the next start; a live one's are never touched),
// the random part keeps two clusters of one process apart. The bridge lives in its own "switch"
// namespace, each pod gets a veth pair (eth0 in the pod, the peer on the bridge), and the addresses
// (a random 10.2xx.y.0/24) exist only inside these namespaces: the root namespace gains no link,
// address or route. Processes run with `ip netns exec` and log to files in the run's folder.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PREFIX = 'shoal-e2e-';
// /etc/netns is created for the pods' resolv.conf; removed again (when empty) if it was not there.
const etcNetnsExisted = existsSync('/etc/netns');

/** Why the suite cannot run here (not root, no `ip netns`), or null. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not running as root';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch (err) {
    return `\`ip netns\` is unavailable: ${(err as Error).message}`;
  }
  for (const tool of ['curl', 'dnsmasq', 'getent']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed`;
    }
  }
  return null;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (never rejects: the exit code says how it went). */
export function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as NodeJS.ErrnoException).code === 'number'
          ? Number((err as NodeJS.ErrnoException).code)
          : (err as { killed?: boolean }).killed
            ? 124
            : 1
        : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function ipSync(...args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    throw new Error(`ip ${args.join(' ')} failed: ${stderr || (err as Error).message}`, { cause: err });
  }
}

export function listNamespaces(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0])
      .filter((n) => n !== '');
  } catch {
    return [];
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids whose command line contains `needle` (zombies, which have none, are not counted). */
export function processesMatching(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmdline.includes(needle)) out.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

function killNamespacePids(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
      .split('\n')
      .filter((p) => /^\d+$/.test(p));
    for (const p of pids) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  } catch {
    /* namespace gone */
  }
}

function deleteNamespace(ns: string): void {
  killNamespacePids(ns);
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
  rmSync(join('/etc/netns', ns), { recursive: true, force: true });
}

/**
 * Removes what earlier runs left behind when their test process died without cleaning up:
 * namespaces, /etc/netns folders, processes and run folders whose owner pid is no longer alive.
 * Returns what it removed.
 */
export function cleanLeftovers(): string[] {
  const removed: string[] = [];
  const owner = (name: string) => {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    return m ? Number(m[1]) : null;
  };
  const stale = (name: string) => {
    const pid = owner(name);
    return pid !== null && pid !== process.pid && !pidAlive(pid);
  };
  for (const ns of listNamespaces()) {
    if (stale(ns)) {
      deleteNamespace(ns);
      removed.push(`namespace ${ns}`);
    }
  }
  if (existsSync('/etc/netns')) {
    for (const d of readdirSync('/etc/netns')) {
      if (stale(d)) {
        rmSync(join('/etc/netns', d), { recursive: true, force: true });
        removed.push(`/etc/netns/${d}`);
      }
    }
  }
  for (const d of readdirSync(tmpdir())) {
    if (!stale(d)) continue;
    for (const pid of processesMatching(join(tmpdir(), d))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      removed.push(`process ${pid}`);
    }
    rmSync(join(tmpdir(), d), { recursive: true, force: true });
    removed.push(`folder ${join(tmpdir(), d)}`);
  }
  return removed;
}

export interface Pod {
  name: string;
  ns: string;
  ip: string;
}

export interface SpawnOptions {
  /** Resolves readiness when a stdout line matches. */
  readyLine?: RegExp;
  env?: Record<string, string>;
  stdin?: boolean;
}

/** The environment for processes in the pods: tap's loaders and coverage hooks left out (they slow every child down). */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k === 'NODE_V8_COVERAGE' || k.startsWith('TAP') || k.startsWith('_TAPJS')) continue;
    env[k] = v;
  }
  return env;
}

export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private out = '';
  private lineWaiters: Array<{ re: RegExp; resolve: (m: RegExpExecArray) => void }> = [];

  constructor(name: string, child: ChildProcess, logFile: string) {
    this.name = name;
    this.child = child;
    this.logFile = logFile;
    const fd = openSync(logFile, 'a');
    const onData = (c: Buffer) => {
      writeFileSync(fd, c);
      this.out += c.toString();
      if (this.out.length > 1 << 20) this.out = this.out.slice(-(1 << 19));
      for (const w of this.lineWaiters.slice()) {
        const m = w.re.exec(this.out);
        if (m) {
          this.lineWaiters.splice(this.lineWaiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) =>
      child.once('close', (code, signal) => {
        closeSync(fd);
        resolve({ code, signal });
      }),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get output(): string {
    return this.out;
  }

  /** Waits for a line of output matching re (already printed or to come); rejects on exit or after timeoutMs. */
  waitFor(re: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const m = re.exec(this.out);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const w = {
        re,
        resolve: (x: RegExpExecArray) => {
          clearTimeout(timer);
          resolve(x);
        },
      };
      this.lineWaiters.push(w);
      const timer = setTimeout(() => {
        this.lineWaiters.splice(this.lineWaiters.indexOf(w), 1);
        reject(new Error(`${this.name}: no output matching ${re} after ${timeoutMs} ms; output so far:\n${this.tail()}`));
      }, timeoutMs);
      void this.exited.then(({ code, signal }) => {
        if (!this.lineWaiters.includes(w)) return;
        this.lineWaiters.splice(this.lineWaiters.indexOf(w), 1);
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code ?? signal}) before printing ${re}:\n${this.tail()}`));
      });
    });
  }

  tail(lines = 30): string {
    return this.out
      .split('\n')
      .slice(-lines)
      .map((l) => (l.length > 600 ? `${l.slice(0, 600)}...` : l))
      .join('\n');
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.running) this.child.kill(signal);
  }

  write(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }
}

const live = new Set<NetnsCluster>();

/** Tears down every cluster of this process at once (exit handlers, tap's timeout, signals). */
export function destroyAllSync(): void {
  for (const c of [...live]) c.destroySync();
}

let signalsHooked = false;
function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  process.once('exit', destroyAllSync);
  // SIGALRM is how tap ends a test process that ran out of time.
  const codes = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1, SIGALRM: 14 } as const;
  for (const sig of Object.keys(codes) as Array<keyof typeof codes>) {
    process.once(sig, () => {
      destroyAllSync();
      process.exit(128 + codes[sig]);
    });
  }
}

/** A bridge in its own namespace and pods around it, all named under one per-run prefix. */
export class NetnsCluster {
  readonly prefix: string;
  readonly vethTag: string;
  readonly dir: string;
  readonly subnet: string;
  readonly pods = new Map<string, Pod>();
  readonly procs: Proc[] = [];
  private readonly switchNs: string;
  private nextHost = 2;
  private destroyed = false;

  constructor(tag: string) {
    // veth peers sit in the switch namespace, named <vethTag>-<pod> (at most 15 characters).
    this.vethTag = randomBytes(2).toString('hex');
    this.prefix = `${PREFIX}${process.pid}-${tag}${this.vethTag}`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.prefix}-`));
    this.subnet = `10.${randomInt(200, 250)}.${randomInt(0, 256)}`;
    this.switchNs = `${this.prefix}-sw`;
    hookSignals();
    live.add(this);
    ipSync('netns', 'add', this.switchNs);
    ipSync('-n', this.switchNs, 'link', 'set', 'lo', 'up');
    ipSync('-n', this.switchNs, 'link', 'add', 'br0', 'type', 'bridge');
    ipSync('-n', this.switchNs, 'link', 'set', 'br0', 'up');
  }

  /** A namespace with lo up, eth0 on the bridge and the next free address of the subnet. */
  addPod(name: string, opts: { resolvConf?: string } = {}): Pod {
    if (this.pods.has(name)) throw new Error(`pod ${name} exists`);
    if (this.nextHost > 254) throw new Error(`subnet ${this.subnet}.0/24 is full`);
    const ns = `${this.prefix}-${name}`;
    const ip = `${this.subnet}.${this.nextHost++}`;
    const peer = `${this.vethTag}-${name}`.slice(0, 15);
    ipSync('netns', 'add', ns);
    const pod = { name, ns, ip };
    this.pods.set(name, pod);
    ipSync('-n', ns, 'link', 'set', 'lo', 'up');
    ipSync('link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', peer, 'netns', this.switchNs);
    ipSync('-n', this.switchNs, 'link', 'set', peer, 'master', 'br0', 'up');
    ipSync('-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0');
    ipSync('-n', ns, 'link', 'set', 'eth0', 'up');
    if (opts.resolvConf !== undefined) {
      mkdirSync(join('/etc/netns', ns), { recursive: true });
      writeFileSync(join('/etc/netns', ns, 'resolv.conf'), opts.resolvConf);
    }
    return pod;
  }

  pod(name: string): Pod {
    const p = this.pods.get(name);
    if (!p) throw new Error(`no pod ${name}`);
    return p;
  }

  /** Runs a command in the pod's namespace to completion. */
  exec(pod: Pod, cmd: string, args: string[], timeoutMs = 15_000): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', pod.ns, cmd, ...args], timeoutMs);
  }

  /** Starts a long-running process in the pod's namespace (`ip netns exec` execs it: the pid is the process's). */
  spawn(pod: Pod, name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Proc {
    const child = spawn('ip', ['netns', 'exec', pod.ns, cmd, ...args], {
      stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      env: { ...childEnv(), ...opts.env },
    });
    const proc = new Proc(`${name}@${pod.name}`, child, join(this.dir, `${pod.name}.${name}.log`));
    this.procs.push(proc);
    return proc;
  }

  /** Cuts the pod's cable: its veth pair is deleted, packets to it vanish (no RST, no ICMP). */
  unplugPod(name: string): void {
    ipSync('-n', this.switchNs, 'link', 'del', `${this.vethTag}-${name}`.slice(0, 15));
  }

  /** Every process in the pod killed, the namespace (and its veth) deleted. */
  deletePod(name: string): void {
    const pod = this.pod(name);
    for (const p of this.procs) if (p.name.endsWith(`@${name}`)) p.kill('SIGKILL');
    deleteNamespace(pod.ns);
    this.pods.delete(name);
  }

  /** Tears everything down; safe to call twice and from an exit handler. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const p of this.procs) p.kill('SIGKILL');
    for (const pod of this.pods.values()) deleteNamespace(pod.ns);
    this.pods.clear();
    deleteNamespace(this.switchNs);
    for (const pid of processesMatching(this.prefix)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (!etcNetnsExisted) {
      try {
        rmdirSync('/etc/netns');
      } catch {
        /* not empty (another run's pod) or gone */
      }
    }
  }

  /** Tears down, waits for every process to be reaped, removes the run folder unless keepDir. */
  async destroy(opts: { keepDir?: boolean } = {}): Promise<void> {
    this.destroySync();
    await Promise.race([Promise.all(this.procs.map((p) => p.exited)), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    if (!opts.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** What is left of this run: namespaces, /etc/netns folders, links in the root namespace, processes. Empty after destroy(). */
  leftovers(): string[] {
    const out: string[] = [];
    for (const ns of listNamespaces()) if (ns.startsWith(this.prefix)) out.push(`namespace ${ns}`);
    if (existsSync('/etc/netns')) for (const d of readdirSync('/etc/netns')) if (d.startsWith(this.prefix)) out.push(`/etc/netns/${d}`);
    const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
    for (const l of links.split('\n')) {
      const name = l.split(': ')[1]?.split('@')[0];
      if (name && (name.startsWith(`${this.vethTag}-`) || name.startsWith(this.prefix))) out.push(`link ${name} in the root namespace`);
    }
    for (const pid of processesMatching(this.prefix)) out.push(`process ${pid}`);
    for (const p of this.procs) if (p.running) out.push(`process ${p.child.pid} (${p.name})`);
    return out;
  }

  /** Last lines of every process's output, for a failure report. */
  logs(lines = 15): string {
    return this.procs
      .map((p) => `--- ${p.name} (${p.running ? 'running' : `exited ${p.child.exitCode ?? p.child.signalCode}`})\n${p.tail(lines)}`)
      .join('\n');
  }
}
