// discover's HTTP API and CLI as tests drive them: a small client (snapshots, long-polls, waiters),
// polling helpers, and `node cli.ts` run to its end or kept running with its log lines parsed.
// Nothing here knows where discover's state comes from (a real API server, a static file).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { request } from 'undici';
import type { Snapshot } from '../../../shared/snapshot.ts';
import type { Discover } from '../../../discover/main.ts';

export const DISCOVER_TOKEN = 'discover-sa-token';
export const OPERATOR_TOKEN = 'operator-write-token';
export const AUDIENCE = 'shoal';

export interface Answer {
  status: number;
  json: any;
  etag: string | undefined;
  at: number;
}

export async function call(
  base: string,
  method: 'GET' | 'PUT',
  path: string,
  opts: { token?: string; body?: unknown } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${base}${path}`, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    headersTimeout: 70_000,
    bodyTimeout: 70_000,
  });
  const text = await res.body.text();
  const at = performance.now();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.statusCode, json, etag: res.headers.etag as string | undefined, at };
}

export function snapshot(d: Discover, ns: string, app: string, token = OPERATOR_TOKEN): Promise<Answer> {
  return call(d.url, 'GET', `/v2/snapshot/${ns}/${app}`, { token });
}

/** A long-poll: answers when the app's snapshot differs from `version`, or 304 after waitS. */
export function longPoll(d: Discover, ns: string, app: string, version: string, waitS = 30, token = OPERATOR_TOKEN): Promise<Answer> {
  return call(d.url, 'GET', `/v2/snapshot/${ns}/${app}?version=${encodeURIComponent(version)}&wait=${waitS}s`, { token });
}

/** Resolves once the app has `n` long-poll waiters registered (so a change made next wakes them). */
export async function waiters(d: Discover, ns: string, app: string, n = 1): Promise<void> {
  await until(`${n} waiter(s) on ${ns}/${app}`, () => d.store.waiting(ns, app) >= n);
}

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** "address:port" of a cluster's endpoints, sorted. */
export function endpointsOf(s: Snapshot, cluster: string): string[] {
  const c = s.clusters.find((x) => x.name === cluster);
  if (!c) throw new Error(`snapshot ${s.namespace}/${s.app} has no cluster ${cluster}: ${s.clusters.map((x) => x.name).join(', ')}`);
  return c.endpoints.map((e) => `${e.address}:${e.port}`).sort();
}

// ----- the CLI as a process -------------------------------------------------------------------

const cli = join(import.meta.dirname, '..', '..', '..', 'cli.ts');

/** `node cli.ts ARGS` to its end: stdout, stderr, and the exit code (0 unless it failed). */
export function execCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [cli, ...args], { env: childEnv() }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The test's env without tap's coverage hooks: the children are the product, not the test. */
export function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_NO_WARNINGS: '1' };
  delete env.NODE_V8_COVERAGE;
  delete env.NODE_OPTIONS;
  return env;
}

export interface Running {
  child: ChildProcess;
  logs: Array<Record<string, any>>;
  stderr: string[];
  /** The first log line with this msg. */
  line(msg: string, ms?: number): Promise<Record<string, any>>;
}

export function runCli(args: string[]): Running {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
  const logs: Array<Record<string, any>> = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      logs.push(JSON.parse(l));
    } catch {
      logs.push({ msg: l });
    }
  });
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  return {
    child,
    logs,
    stderr,
    // A cold start of the CLI takes over 10 s on a loaded 2-core machine.
    async line(msg, ms = 90_000) {
      await until(
        `log line "${msg}" (stderr: ${stderr.join(' | ')})`,
        () => logs.some((l) => l.msg === msg) || child.exitCode !== null,
        ms,
      );
      const found = logs.find((l) => l.msg === msg);
      if (!found) throw new Error(`discover exited ${child.exitCode} before "${msg}": ${stderr.join('\n')}`);
      return found;
    },
  };
}

export async function stopCli(r: Running): Promise<number | null> {
  if (r.child.exitCode !== null) return r.child.exitCode;
  const exited = once(r.child, 'exit');
  r.child.kill('SIGTERM');
  const [code] = await exited;
  return code as number | null;
}
