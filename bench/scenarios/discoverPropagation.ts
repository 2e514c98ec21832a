// discover-propagation: N simulated sidecars long-poll discover from other processes; the topology
// file changes; how long until every one holds the new version (p50/p99/max), and discover's RSS.
// Beside it, the floor: a bare node:http long-poll server woken by the same kind of file edit.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { below, profileArgs, type ScenarioContext } from '../lib/context.ts';
import { root } from '../lib/httpPeers.ts';
import { buildC } from '../lib/cBuild.ts';
import { type ClientKind, type LongPollChild, startLongPollChild } from '../lib/longPollChildren.ts';
import { memMb, ProcessGroup, sleep } from '../lib/processes.ts';
import type { Row, ScenarioResult } from '../lib/report.ts';
import { CURVE_PERCENTILES, figure, median, percentile, ratio } from '../lib/stats.ts';

/** A topology of 100 services and 101 apps; `variant` moves one endpoint of web's dependency api. */
export function topology(variant: number): string {
  const lines = ['services:'];
  for (let i = 0; i < 100; i++) {
    lines.push(
      `  - { name: svc-${i}, ports: [{ port: 8080, protocol: http }], endpoints: [10.1.${i}.1:8080, 10.1.${i}.2:8080, 10.1.${i}.3:8080] }`,
    );
  }
  lines.push(
    `  - { name: api, ports: [{ port: 8080, protocol: http }], endpoints: [10.0.0.1:8080, 10.0.0.2:8080, 10.0.0.${3 + variant}:8080] }`,
  );
  lines.push('apps:');
  lines.push(
    '  - { name: web, config: { base_services: [{ depend_service_alias: api, port: 8080 }, { depend_service_alias: svc-1, port: 8080 }] } }',
  );
  for (let i = 0; i < 100; i++) {
    lines.push(
      `  - { name: app-${i}, config: { base_services: [{ depend_service_alias: svc-${i}, port: 8080 }, { depend_service_alias: svc-${(i + 1) % 100}, port: 8080 }] } }`,
    );
  }
  return lines.join('\n') + '\n';
}

/** discover's own account of one edit, from its log: watch to read, read + parse, apply (rebuild and wake). */
interface EditLog {
  debounceMs: number;
  readParseMs: number;
  applyMs: number;
  rebuilt: number;
  woken: number;
}

interface Server {
  key: 'discover' | 'floor';
  label: string;
  base: string;
  pid: number;
  file: string;
  variant: number;
  edits?: EditLog[];
}

/** The Node flags the container image gives discover (its NODE_OPTIONS; the chart does not change them). */
export function imageNodeFlags(): string[] {
  const m = /^ENV NODE_OPTIONS=(.*)$/m.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  return m ? m[1].replace(/^"|"$/g, '').split(' ').filter(Boolean) : [];
}

async function startDiscoverChild(
  group: ProcessGroup,
  file: string,
  nodeArgs: string[],
  extra: string[],
): Promise<{ base: string; pid: number; edits: EditLog[] }> {
  const cli = join(root, 'dist', 'cli.js');
  if (!existsSync(cli)) throw new Error('dist/cli.js is missing: run npm run build first (npm run bench does)');
  const child = group.spawn(
    process.execPath,
    [
      ...imageNodeFlags(),
      ...nodeArgs,
      cli,
      'discover',
      '--static',
      file,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--log-level',
      'info',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (c) => {
      out += c;
      const m = /"port":([0-9]+),"msg":"discover listening"/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`discover exited ${code}: ${out.slice(-500)}`)));
  });
  // Keep reading its log: each edit logs 'topology file read' then 'topology applied'.
  const edits: EditLog[] = [];
  let partial: Partial<EditLog> = {};
  let rest = '';
  child.stdout!.removeAllListeners('data');
  child.stdout!.on('data', (c) => {
    const lines = (rest + c).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      if (line.includes('"msg":"topology file read"')) {
        const j = JSON.parse(line) as EditLog;
        partial = { debounceMs: j.debounceMs, readParseMs: j.readParseMs };
      } else if (line.includes('"msg":"topology applied"') && partial.readParseMs !== undefined) {
        const j = JSON.parse(line) as EditLog;
        edits.push({ ...partial, applyMs: j.applyMs, rebuilt: j.rebuilt, woken: j.woken } as EditLog);
        partial = {};
      }
    }
  });
  return { base: `http://127.0.0.1:${port}`, pid: child.pid!, edits };
}

async function currentVersion(base: string): Promise<string> {
  const res = await fetch(`${base}/v2/snapshot/default/web`);
  await res.arrayBuffer();
  return res.headers.get('etag')!.replace(/"/g, '');
}

async function waiting(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^shoal_discover_longpoll_waiters\{[^}]*\} ([0-9]+)/m.exec(text)?.[1] ?? 0);
}

/** Opens n long-poll clients against base: one C process, or up to 4 Node processes. */
async function openClients(group: ProcessGroup, kind: ClientKind, base: string, n: number): Promise<LongPollChild[]> {
  const procs = kind === 'c' ? 1 : Math.min(4, Math.max(1, Math.ceil(n / 2500)));
  const port = Number(base.split(':')[2]);
  const clients = Array.from({ length: procs }, (_, i) =>
    startLongPollChild(group, kind, port, '/v2/snapshot/default/web', Math.floor(n / procs) + (i < n % procs ? 1 : 0)),
  );
  await Promise.all(clients.map((c) => c.once('open')));
  return clients;
}

/** One change: every client waits on the current version, the file is replaced, all answers are timed (ms from the rename). */
async function propagate(server: Server, clients: LongPollChild[], n: number): Promise<number[]> {
  const version = await currentVersion(server.base);
  const sent = clients.map((c) => c.once('sent'));
  for (const c of clients) c.send({ type: 'wait', version });
  await Promise.all(sent);
  const deadline = Date.now() + 30_000;
  while ((await waiting(server.base)) < n) {
    if (Date.now() > deadline) throw new Error(`${server.key}: fewer than ${n} waiters after 30 s`);
    await sleep(20);
  }
  const answered = clients.map((c) => c.once<{ statuses: Record<string, number> }>('answered'));
  server.variant = 1 - server.variant;
  const tmp = `${server.file}.tmp`;
  writeFileSync(tmp, topology(server.variant));
  const t0 = process.hrtime.bigint();
  renameSync(tmp, server.file);
  const statuses = await Promise.all(answered);
  const times = await Promise.all(
    clients.map((c) => {
      const p = c.once<{ times: string[] }>('times');
      c.send({ type: 'report' });
      return p;
    }),
  );
  const ok = statuses.reduce((a, s) => a + (s.statuses['200'] ?? 0), 0);
  if (ok !== n) throw new Error(`${server.key}: ${ok} of ${n} waiters got 200 (${JSON.stringify(statuses)})`);
  return times.flatMap((t) => t.times.map((x) => Number(BigInt(x) - t0) / 1e6)).sort((a, b) => a - b);
}

/** The log line of an edit can trail its answers by a moment. */
async function waitLogged(edits: EditLog[], had: number): Promise<void> {
  for (let i = 0; i < 25 && edits.length < had + 1; i++) await sleep(20);
}

function wrkRps(url: string, seconds: number, header?: string): number | null {
  try {
    const out = execFileSync('wrk', ['-t2', '-c50', `-d${seconds}s`, ...(header ? ['-H', header] : []), url], { encoding: 'utf8' });
    return Math.round(Number(/Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1]));
  } catch {
    return null;
  }
}

export interface PropagationOptions {
  waiters?: number[];
  /** Also measure discover's snapshot requests per second (full answers and 304s) with wrk. */
  snapshotRps?: boolean;
  /** The simulated sidecars: the C client (the default, when cc is there) or the Node one. */
  client?: ClientKind;
  /** discover's --fanout-threads (default: its own default, auto). */
  fanOutThreads?: string;
}

export async function runDiscoverPropagation(ctx: ScenarioContext, opts: PropagationOptions = {}): Promise<ScenarioResult> {
  const counts = opts.waiters ?? (ctx.smoke ? [50] : [100, 1000, 10000]);
  // Rounds below 10,000 sidecars are cheap: take at least 5 so a p99 over rounds means something.
  const roundsFor = (n: number) => (ctx.smoke || n >= 10000 ? ctx.rounds : Math.max(ctx.rounds, 5));
  const group = new ProcessGroup();
  const errors: string[] = [];
  const servers: Server[] = [];
  let kind: ClientKind = opts.client ?? 'c';
  const clientNotes: string[] = [];
  if (kind === 'c') {
    const built = buildC('longpoll_client', ctx.log);
    if ('error' in built) {
      kind = 'node';
      clientNotes.push(
        `The C client could not be built (${built.error}), so the simulated sidecars are Node processes: their reading (20-40 us an answer, in a row on one core) is part of these figures.`,
      );
    }
  }
  const results: Record<string, { rounds: number[][]; rssMb: number }> = {};
  // discover's own time per edit at each count, from its log.
  const own: Record<number, EditLog[]> = {};
  // p99 of the unmeasured first edit at each count, per server.
  const firstEdit: Record<string, number[]> = {};
  let snapshotRps: Record<string, number | null> | undefined;
  let snapshotBytes = 2048;
  const failed = new Set<string>();
  try {
    for (const key of ['discover', 'floor'] as const) {
      const d = join(ctx.dir, `propagation-${key}`);
      mkdirSync(d, { recursive: true });
      const file = join(d, 'topology.yaml');
      writeFileSync(file, topology(0));
      try {
        const s =
          key === 'discover'
            ? await startDiscoverChild(
                group,
                file,
                profileArgs(ctx, 'discover'),
                opts.fanOutThreads !== undefined ? ['--fanout-threads', opts.fanOutThreads] : [],
              )
            : await (async () => {
                // The floor answers with as many bytes as discover's snapshot of web has.
                const { info } = await group.jsonChild(process.execPath, [
                  ...imageNodeFlags(),
                  join(root, 'bench', 'lib', 'longPollFloorChild.ts'),
                  file,
                  String(snapshotBytes),
                ]);
                return { base: `http://127.0.0.1:${info.port}`, pid: info.pid };
              })();
        servers.push({ key, label: key === 'discover' ? 'shoal discover' : 'bare node:http long-poll (floor)', ...s, file, variant: 0 });
        if (key === 'discover') snapshotBytes = (await (await fetch(`${s.base}/v2/snapshot/default/web`)).arrayBuffer()).byteLength;
      } catch (err) {
        errors.push(`${key}: ${(err as Error).message}`);
      }
    }
    const discover = servers.find((s) => s.key === 'discover');
    if (opts.snapshotRps && discover) {
      const url = `${discover.base}/v2/snapshot/default/web`;
      const v = await currentVersion(discover.base);
      snapshotRps = { full: wrkRps(url, ctx.duration), notModified: wrkRps(url, ctx.duration, `If-None-Match: "${v}"`) };
    }
    for (const n of counts) {
      const rounds = roundsFor(n);
      const clients = new Map<string, LongPollChild[]>();
      for (const s of servers) {
        if (failed.has(s.key)) continue;
        try {
          clients.set(s.key, await openClients(group, kind, s.base, n));
          results[`${s.key}@${n}`] = { rounds: [], rssMb: NaN };
        } catch (err) {
          failed.add(s.key);
          errors.push(`${s.label} with ${n} sidecars: ${(err as Error).message}`);
        }
      }
      // One unmeasured edit per server first: the first edit after start runs cold code (V8 has
      // not compiled the parse, build and wake paths yet); its p99 is reported on its own.
      for (const s of servers) {
        if (failed.has(s.key) || !clients.has(s.key)) continue;
        try {
          const times = await propagate(s, clients.get(s.key)!, n);
          (firstEdit[`${s.key}@${n}`] ??= []).push(percentile(times, 99));
          ctx.log(`discover-propagation ${n} sidecars warm-up edit ${s.key}: p99 ${percentile(times, 99).toFixed(2)} ms (not counted)`);
        } catch (err) {
          failed.add(s.key);
          errors.push(`${s.label} with ${n} sidecars (warm-up edit): ${(err as Error).message}`);
        }
      }
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? servers : [...servers].reverse();
        for (const s of order) {
          if (failed.has(s.key) || !clients.has(s.key)) continue;
          try {
            const logged = s.edits?.length ?? 0;
            const times = await propagate(s, clients.get(s.key)!, n);
            results[`${s.key}@${n}`].rounds.push(times);
            if (s.edits) {
              await waitLogged(s.edits, logged);
              const e = s.edits[s.edits.length - 1];
              if (e) (own[n] ??= []).push(e);
            }
            ctx.log(
              `discover-propagation ${n} sidecars round ${r + 1} ${s.key}: p50 ${percentile(times, 50).toFixed(2)} p99 ${percentile(times, 99).toFixed(2)} max ${times[times.length - 1].toFixed(2)} ms`,
            );
          } catch (err) {
            failed.add(s.key);
            errors.push(`${s.label} with ${n} sidecars: ${(err as Error).message}`);
          }
        }
      }
      for (const s of servers) {
        if (results[`${s.key}@${n}`]) results[`${s.key}@${n}`].rssMb = memMb(s.pid).rss;
        for (const c of clients.get(s.key) ?? []) c.send({ type: 'exit' });
      }
      await sleep(200);
    }
  } finally {
    await group.stop();
  }
  const rows: Row[] = [];
  for (const n of counts) {
    const g = `${n.toLocaleString('en-US')} sidecars`;
    const per = (key: string, p: number) => {
      const res = results[`${key}@${n}`];
      return res?.rounds.length ? median(res.rounds.map((t) => percentile(t, p))) : undefined;
    };
    for (const s of servers) {
      const res = results[`${s.key}@${n}`];
      if (!res || res.rounds.length === 0 || failed.has(s.key)) {
        rows.push({ contender: s.key, label: s.label, group: g, figures: {}, ratios: {}, error: 'failed' });
        continue;
      }
      const pooled = res.rounds.flat().sort((a, b) => a - b);
      const curve: Record<string, number> = {};
      for (const p of CURVE_PERCENTILES) curve[String(p)] = Math.round(percentile(pooled, p) * 1000) / 1000;
      rows.push({
        contender: s.key,
        label: s.label,
        group: g,
        figures: {
          p50: figure(
            res.rounds.map((t) => percentile(t, 50)),
            2,
          ),
          p99: figure(
            res.rounds.map((t) => percentile(t, 99)),
            2,
          ),
          max: figure(
            res.rounds.map((t) => t[t.length - 1]),
            2,
          ),
          rssMb: figure([res.rssMb], 1),
        },
        ratios: { p99VsFloor: ratio(per(s.key, 99), per('floor', 99)), rssVsFloor: ratio(res.rssMb, results[`floor@${n}`]?.rssMb) },
        curve,
      });
    }
  }
  const p99At1000 = rows.find((r) => r.contender === 'discover' && r.group === '1,000 sidecars')?.figures.p99?.median ?? null;
  const p99At10000 = rows.find((r) => r.contender === 'discover' && r.group === '10,000 sidecars')?.figures.p99?.median ?? null;
  return {
    scenario: 'discover-propagation',
    title: 'discover-propagation: from a topology edit to every sidecar holding the new version',
    method: `${counts.join(', ')} simulated sidecars hold long-polls (GET /v2/snapshot/default/web?version=V&wait=60s, keep-alive) from ${kind === 'c' ? 'one other process, a C epoll client (bench/lib/longpoll_client.c), which stands for sidecars on other pods: each reads only its own answer' : 'up to 4 other Node processes (bench/lib/longPollClients.ts)'}. discover runs from dist/ with the container image's Node flags (${imageNodeFlags().join(' ') || 'none'}, the floor too) and --fanout-threads ${opts.fanOutThreads ?? 'auto'}. The topology file (100 services, 101 apps) is replaced atomically; each client records when the first byte of its answer arrives, on the machine's monotonic clock, and the time is taken from the rename. Each count starts with one unmeasured edit per server (its p99 is in the notes), then ${counts.map((n) => `${roundsFor(n)} rounds at ${n}`).join(', ')}, alternating which server goes first; p50/p99/max are per round, shown as the median over rounds with the spread; the curves pool every round. The floor is a bare node:http server holding the same requests and answering them all on the same kind of file edit (fs.watch on the folder), without discover's debounce, YAML parsing or snapshot building, with a body as large as discover's snapshot (${snapshotBytes} bytes). RSS is read after the last round at each count.`,
    command: ctx.command,
    date: new Date().toISOString(),
    machine: ctx.machine,
    settings: {
      client: kind,
      discoverNodeFlags: imageNodeFlags().join(' '),
      fanOutThreads: opts.fanOutThreads ?? 'auto',
      sidecars: counts,
      rounds: counts.map(roundsFor),
      snapshotBytes,
      snapshotRps: snapshotRps ?? null,
    },
    columns: [
      { key: 'p50', label: 'p50', unit: 'ms', kind: 'figure' },
      { key: 'p99', label: 'p99', unit: 'ms', kind: 'figure' },
      { key: 'p99VsFloor', label: 'p99 × floor', unit: '', kind: 'ratio' },
      { key: 'max', label: 'max', unit: 'ms', kind: 'figure' },
      { key: 'rssMb', label: 'server RSS', unit: 'MB', kind: 'figure' },
      { key: 'rssVsFloor', label: 'RSS × floor', unit: '', kind: 'ratio' },
    ],
    rows,
    bars: [
      { title: 'p99 from edit to the last sidecar (lower is better)', figure: 'p99', unit: 'ms' },
      { title: 'Server RSS (lower is better)', figure: 'rssMb', unit: 'MB' },
    ],
    curveTitle: 'Time from edit to answer, by percentile of sidecars',
    targets: [
      below('propagation p99 at 1,000 sidecars', 100, p99At1000, 'ms'),
      ...(counts.includes(1000) ? [below('long-poll wake p99 at 1,000 waiters', 20, p99At1000, 'ms')] : []),
      ...(counts.includes(10000) ? [below('long-poll wake p99 at 10,000 waiters', 200, p99At10000, 'ms')] : []),
    ],
    notes: [
      ...clientNotes,
      ...counts
        .filter((n) => firstEdit[`discover@${n}`])
        .map(
          (n) =>
            `Warm-up: before the measured rounds at ${n.toLocaleString('en-US')} sidecars each server took one unmeasured edit, whose p99 was ${firstEdit[`discover@${n}`].map((x) => x.toFixed(1)).join(', ')} ms for discover${firstEdit[`floor@${n}`] ? ` and ${firstEdit[`floor@${n}`].map((x) => x.toFixed(1)).join(', ')} ms for the floor` : ''} (code not yet compiled by V8; a discover that has served one edit is past it).`,
        ),
      ...(snapshotRps
        ? [`discover snapshot requests per second (wrk -t2 -c50): full ${snapshotRps.full}, 304 ${snapshotRps.notModified}.`]
        : []),
      ...counts
        .filter((n) => own[n]?.length)
        .map((n) => {
          const m = (f: (e: EditLog) => number) => median(own[n].map(f)).toFixed(2);
          const rebuilt = [...new Set(own[n].map((e) => e.rebuilt))].join(' or ');
          return `discover's own time per edit at ${n.toLocaleString('en-US')} sidecars (its log, median of ${own[n].length} edits): watch event to read ${m((e) => e.debounceMs)} ms, read + parse ${m((e) => e.readParseMs)} ms, apply ${m((e) => e.applyMs)} ms (rebuilt ${rebuilt} snapshot(s), then wrote the ${n.toLocaleString('en-US')} answers); the rest of the p99 is the answers crossing loopback and being read by the clients.`;
        }),
    ],
    errors,
    raw: Object.fromEntries(
      Object.entries(results).map(([k, v]) => [k, { rssMb: v.rssMb, p99PerRound: v.rounds.map((t) => percentile(t, 99)) }]),
    ),
  };
}
