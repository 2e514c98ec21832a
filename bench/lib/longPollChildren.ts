// The simulated sidecars of the long-poll benchmarks, behind one interface: the C client
// (bench/lib/longpoll_client.c, built by cBuild.ts with cc) by default, the Node client
// (longPollClients.ts) where there is no C compiler. Both answer the same messages: open, sent,
// answered {statuses}, times {times}.
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { root } from './httpPeers.ts';
import { onceMessage, type ProcessGroup } from './processes.ts';
import { cBinary } from './cBuild.ts';

export interface LongPollChild {
  send(msg: { type: 'wait'; version: string } | { type: 'report' } | { type: 'exit' }): void;
  once<T>(type: string): Promise<T>;
}

export type ClientKind = 'c' | 'node';

const binary = cBinary('longpoll_client');

/** One client process holding `count` long-polls of `path` on 127.0.0.1:port. */
export function startLongPollChild(group: ProcessGroup, kind: ClientKind, port: number, path: string, count: number): LongPollChild {
  if (kind === 'node') {
    const c = fork(join(root, 'bench', 'lib', 'longPollClients.ts'), ['127.0.0.1', String(port), path, String(count)]);
    group.children.push(c);
    return { send: (msg) => void c.send(msg), once: (type) => onceMessage(c, type) };
  }
  const c = group.spawn(binary, ['127.0.0.1', String(port), path, String(count)], { stdio: ['pipe', 'pipe', 'inherit'] });
  // Its stdout lines become the Node client's messages.
  const waiting: { type: string; resolve: (m: never) => void; reject: (e: Error) => void }[] = [];
  let rest = '';
  c.stdout!.setEncoding('utf8');
  c.stdout!.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      const [type, ...words] = line.split(' ');
      const msg: Record<string, unknown> = { type };
      if (type === 'open') msg.count = Number(words[0]);
      if (type === 'answered') msg.statuses = Object.fromEntries(words.map((w) => w.split('=')).map(([s, n]) => [s, Number(n)]));
      if (type === 'times') msg.times = words;
      const i = waiting.findIndex((w) => w.type === type);
      if (i >= 0) waiting.splice(i, 1)[0].resolve(msg as never);
    }
  });
  c.once('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`long-poll client exited (${code}) while waiting for ${w.type}`));
  });
  return {
    send: (msg) => void c.stdin!.write(msg.type === 'wait' ? `wait ${msg.version}\n` : `${msg.type}\n`),
    once: <T>(type: string) =>
      new Promise<T>((resolve, reject) => {
        if (c.exitCode !== null) reject(new Error(`long-poll client exited (${c.exitCode}) while waiting for ${type}`));
        else waiting.push({ type, resolve: resolve as (m: never) => void, reject });
      }),
  };
}
