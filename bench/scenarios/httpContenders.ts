// Starts the HTTP contenders a scenario asks for, all in front of one backend; a contender that
// cannot start is reported, not fatal, so the others still run.
import { join } from 'node:path';
import { profileArgs, proxyCpu, type ScenarioContext } from '../lib/context.ts';
import { startBackend, startHaproxy, startHttpProxy, startNginxProxy, startShoal, type ShoalSidecar } from '../lib/httpPeers.ts';
import type { ProcessGroup } from '../lib/processes.ts';

export type HttpContender = 'direct' | 'shoal-l7' | 'shoal-l4' | 'nginx-1' | 'haproxy-1' | 'http-proxy' | 'nginx-multi' | 'haproxy-multi';

export interface Started {
  key: HttpContender;
  label: string;
  url: string;
}

export async function startHttpContenders(
  group: ProcessGroup,
  ctx: ScenarioContext,
  keys: HttpContender[],
  opts: { sidecarNodeOptions?: string[] } = {},
): Promise<{ contenders: Started[]; errors: string[]; sidecar?: ShoalSidecar; backendPort: number; pinnedTo?: string }> {
  const cpu = proxyCpu(ctx);
  const workers = ctx.machine?.cores ?? 2;
  const backendPort = await startBackend(group, ctx.dir);
  const contenders: Started[] = [];
  const errors: string[] = [];
  let sidecar: ShoalSidecar | undefined;
  const pinNote = cpu ? `, pinned to CPU ${cpu}` : '';
  const attempt = async (key: HttpContender, label: string, start: () => Promise<string>) => {
    if (!keys.includes(key)) return;
    try {
      contenders.push({ key, label, url: await start() });
    } catch (err) {
      errors.push(`${label}: ${(err as Error).message}`);
    }
  };
  // Started side by side: startup time adds up on a loaded machine.
  const startSidecar = async () => {
    if (!keys.includes('shoal-l7') && !keys.includes('shoal-l4')) return;
    try {
      sidecar = await startShoal(group, join(ctx.dir), {
        backendPort,
        cpus: cpu,
        nodeOptions: [...(opts.sidecarNodeOptions ?? []), ...profileArgs(ctx, 'sidecar')],
      });
    } catch (err) {
      errors.push(`shoal sidecar: ${(err as Error).message}`);
      return;
    }
    const s = sidecar;
    await attempt('shoal-l7', `shoal L7 (1 process${pinNote})`, async () => s.l7Url);
    await attempt('shoal-l4', `shoal L4 (1 process${pinNote})`, async () => s.l4Url);
  };
  await Promise.all([
    attempt('direct', 'direct (no proxy)', async () => `http://127.0.0.1:${backendPort}/`),
    startSidecar(),
    attempt(
      'nginx-1',
      `nginx, 1 worker${pinNote}`,
      async () => `http://127.0.0.1:${await startNginxProxy(group, ctx.dir, 1, backendPort, cpu)}/`,
    ),
    attempt(
      'haproxy-1',
      `haproxy, nbthread 1${pinNote}`,
      async () => `http://127.0.0.1:${(await startHaproxy(group, ctx.dir, 1, backendPort, undefined, cpu)).httpPort}/`,
    ),
    attempt(
      'http-proxy',
      `http-proxy, keep-alive agent${pinNote}`,
      async () => `http://127.0.0.1:${(await startHttpProxy(group, backendPort, cpu)).port}/`,
    ),
    attempt(
      'nginx-multi',
      `nginx, ${workers} workers (multi)`,
      async () => `http://127.0.0.1:${await startNginxProxy(group, ctx.dir, workers, backendPort)}/`,
    ),
    attempt(
      'haproxy-multi',
      `haproxy, nbthread ${workers} (multi)`,
      async () => `http://127.0.0.1:${(await startHaproxy(group, ctx.dir, workers, backendPort)).httpPort}/`,
    ),
  ]);
  // Keep the order asked for.
  contenders.sort((a, b) => keys.indexOf(a.key) - keys.indexOf(b.key));
  return { contenders, errors, sidecar, backendPort, pinnedTo: cpu };
}
