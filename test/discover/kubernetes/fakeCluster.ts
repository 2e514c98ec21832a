// discover on the fake Kubernetes API server (test/lib/fakeKubeApi.ts): the `--kubernetes` code path
// with a kubeconfig file pointing at the fake over HTTPS. Only for the tests not yet moved to the real
// control plane (realKube.ts); it goes with the fake.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { createLogger, type Logger } from '../../../shared/log.ts';
import { startDiscover, type Discover, type DiscoverOptions } from '../../../discover/main.ts';
import {
  endpointSlice, meshConfigMap, service, withFakeKubeApi, type EndpointSpec, type FakeKubeApi, type FakeKubeApiOptions,
} from '../../lib/fakeKubeApi.ts';
import { AUDIENCE, DISCOVER_TOKEN, OPERATOR_TOKEN } from './discoverClient.ts';

export interface Env {
  api: FakeKubeApi;
  dir: string;
  kubeconfig: string;
}

/** A fake API server that knows discover's own token, and a temporary folder with its kubeconfig file. */
export async function fakeCluster(t: Test, opts: FakeKubeApiOptions = {}): Promise<Env> {
  const api = await withFakeKubeApi(t, opts);
  api.addToken(DISCOVER_TOKEN, { namespace: 'shoal', serviceAccount: 'shoal-discover' });
  const dir = mkdtempSync(join(tmpdir(), 'shoal-k8s-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = await api.writeKubeconfigFile(dir, DISCOVER_TOKEN);
  return { api, dir, kubeconfig };
}

/** A sidecar's projected token: service account `sa` of namespace `ns`, audience shoal. */
export function sidecarToken(api: FakeKubeApi, ns: string, sa: string): string {
  const token = `sa-${ns}-${sa}-${Math.random().toString(36).slice(2)}`;
  api.addToken(token, { namespace: ns, serviceAccount: sa, audiences: [AUDIENCE], pod: `${sa}-pod` });
  return token;
}

export async function startKubeDiscover(t: Test, env: Env, opts: { staleAfterMs?: number; log?: Logger; wait?: boolean; kubernetes?: Partial<NonNullable<DiscoverOptions['kubernetes']>> } = {}): Promise<Discover> {
  const d = await startDiscover({
    kubernetes: { kubeconfigFile: env.kubeconfig, staleAfterMs: opts.staleAfterMs ?? 30_000, tokenAudience: AUDIENCE, ...opts.kubernetes },
    host: '127.0.0.1', port: 0, writeToken: OPERATOR_TOKEN,
    log: opts.log ?? createLogger('discover', process.env.SHOAL_TEST_LOG ?? 'silent'),
  });
  t.teardown(() => d.close());
  if (opts.wait !== false) await d.ready;
  return d;
}

export const ips = (...last: number[]): EndpointSpec[] => last.map((n) => ({ ip: `10.0.0.${n}`, ready: true, serving: true, terminating: false }));

/** Service `name` on port 8080 (http) with one slice of the given endpoints, and `web` depending on it. */
export function seedWebAndApi(api: FakeKubeApi, ns = 'default', endpoints: EndpointSpec[] = ips(1, 2, 3)): void {
  api.apply(service(ns, 'api', [{ name: 'http', port: 8080, appProtocol: 'http' }]));
  api.apply(endpointSlice(ns, 'api-abcde', 'api', endpoints, [{ name: 'http', port: 8080 }]));
  api.apply(meshConfigMap(ns, 'web', 'mesh', { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http' }] }));
}

