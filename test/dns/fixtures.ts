// Shared by the DNS tests: a real dnsmasq upstream on loopback, the real dig, raw UDP/TCP
// queries built with dns-packet, and a responder on port 0 torn down with the test.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import type { Test } from 'tap';
import { createLogger } from '../../shared/log.ts';
import type { DnsName } from '../../shared/snapshot.ts';
import { startDnsResponder, type DnsResponder, type DnsResponderOptions } from '../../dns/main.ts';

export const DEMO_NAMES: DnsName[] = [
  ...['api', 'api.default', 'api.default.svc', 'api.default.svc.cluster.local'].map((name) => ({ name, address: '127.0.0.2' })),
  ...['cache', 'cache.default', 'cache.default.svc', 'cache.default.svc.cluster.local'].map((name) => ({ name, address: '127.0.0.3' })),
  { name: '*.example.internal', address: '127.0.0.4' },
  { name: 'api.example', address: '127.0.0.5' },
  { name: '*', address: '127.0.0.6' },
];

export async function withResponder(t: Test, opts: Partial<DnsResponderOptions> = {}): Promise<DnsResponder> {
  const r = await startDnsResponder({
    host: '127.0.0.1',
    port: 0,
    upstreams: [],
    log: createLogger('dns', 'silent'),
    ...opts,
  });
  t.teardown(() => r.close());
  return r;
}

export interface Dnsmasq {
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * A real dnsmasq on 127.0.0.1 and a random port, answering only from its own flags: no
 * resolv.conf, no hosts file, no server= lines, so it never forwards anywhere.
 */
export async function startDnsmasq(t: Test, records: string[]): Promise<Dnsmasq> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = randomInt(20000, 60000);
    const child = spawn(
      'dnsmasq',
      [
        '--no-daemon',
        '--conf-file=/dev/null',
        '--no-resolv',
        '--no-hosts',
        '--pid-file=',
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--local-ttl=60',
        '--log-facility=-',
        ...records,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    child.stdout!.on('data', (c) => (log += c));
    child.stderr!.on('data', (c) => (log += c));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const up = await Promise.race([
      (async () => {
        for (let i = 0; i < 25; i++) {
          if (await answers(port)) return true;
          await sleep(20);
        }
        return false;
      })(),
      exited.then(() => false),
    ]);
    if (!up) {
      child.kill('SIGKILL');
      if (/in use/i.test(log)) continue;
      throw new Error(`dnsmasq did not start on port ${port}: ${log}`);
    }
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    };
    t.teardown(stop);
    return { port, child, stop };
  }
  throw new Error('dnsmasq: no free port after 10 tries');
}

async function answers(port: number): Promise<boolean> {
  try {
    await udpQuery(port, { questions: [{ type: 'A', name: 'probe.invalid' }] }, 200);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface DigResult {
  status: string;
  flags: string[];
  answers: string[];
  stdout: string;
  ms: number;
}

/** Runs the real dig against 127.0.0.1:port and reads status, flags and answer lines. */
export function dig(port: number, ...args: string[]): Promise<DigResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    execFile('dig', ['@127.0.0.1', '-p', String(port), '+time=3', '+tries=1', ...args], (err, stdout) => {
      // dig exits 9 when no server answered; the output still says so.
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return reject(err);
      const status = /status: ([A-Z]+)/.exec(stdout)?.[1] ?? 'NO-ANSWER';
      const flags = (/;; flags: ([a-z ]+);/.exec(stdout)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
      const section = /;; ANSWER SECTION:\n([\s\S]*?)(\n\n|$)/.exec(stdout)?.[1] ?? '';
      const answers = section
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => l.split(/\s+/).join(' '));
      resolve({ status, flags, answers, stdout, ms: Date.now() - started });
    });
  });
}

/** One query over UDP from a fresh socket; resolves with the raw answer. */
export function udpQuery(port: number, packet: dnsPacket.Packet | Buffer, timeoutMs = 2000): Promise<Buffer> {
  const msg = Buffer.isBuffer(packet)
    ? packet
    : dnsPacket.encode({ type: 'query', id: randomInt(65536), flags: dnsPacket.RECURSION_DESIRED, ...packet });
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`no answer on udp 127.0.0.1:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.on('error', () => undefined);
    s.send(msg, port, '127.0.0.1');
  });
}

/** One query over TCP (length-prefixed); resolves with the raw answer. */
export function tcpQuery(port: number, packet: dnsPacket.Packet, timeoutMs = 2000): Promise<Buffer> {
  const msg = dnsPacket.encode({ type: 'query', id: randomInt(65536), flags: dnsPacket.RECURSION_DESIRED, ...packet });
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer on tcp 127.0.0.1:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        clearTimeout(timer);
        s.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(msg.length);
    s.write(Buffer.concat([prefix, msg]));
  });
}

export const rcodeOf = (m: Buffer): number => m[3] & 0x0f;
