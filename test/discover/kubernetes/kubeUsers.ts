// Real users of the test control plane, for who-may-read tests: ServiceAccounts and their tokens from
// the TokenRequest API (what `kubectl create token` calls), Roles and bindings, kubeconfig files whose
// user holds a token, a token file or an exec plugin, and the API server's own request counters.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { createLogger } from '../../../shared/log.ts';
import { startDiscover, type Discover } from '../../../discover/main.ts';
import type { TestKube } from '../../lib/kube.ts';
import type { Api } from './realKube.ts';
import { AUDIENCE, OPERATOR_TOKEN } from './discoverClient.ts';

/** Creates ServiceAccount NS/NAME (no error when it exists). */
export async function serviceAccount(api: Api, ns: string, name: string): Promise<void> {
  const a = await api.req('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name, namespace: ns },
  });
  if (a.status !== 201 && a.status !== 409) throw new Error(`create serviceaccount ${ns}/${name}: ${a.status} ${JSON.stringify(a.json)}`);
}

/** A token of ServiceAccount NS/NAME from the TokenRequest API; no audience means the API server's own (as `kubectl create token`). */
export async function requestToken(
  api: Api,
  ns: string,
  name: string,
  opts: { audience?: string; seconds?: number } = {},
): Promise<string> {
  const r = await api.ok('POST', `/api/v1/namespaces/${ns}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { audiences: opts.audience ? [opts.audience] : undefined, expirationSeconds: opts.seconds ?? 3600 },
  });
  return r.status.token as string;
}

export interface Subject {
  kind: 'ServiceAccount' | 'User' | 'Group';
  name: string;
  namespace?: string;
}

/** Role NAME in NS with RULES, and RoleBinding NAME giving it to SUBJECT. */
export async function bindRole(api: Api, ns: string, name: string, rules: unknown[], subject: Subject): Promise<void> {
  await api.ok('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name, namespace: ns },
    rules,
  });
  await api.ok('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name, namespace: ns },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
    subjects: [subject.kind === 'ServiceAccount' ? subject : { apiGroup: 'rbac.authorization.k8s.io', ...subject }],
  });
}

/** ClusterRole NAME with RULES bound cluster-wide to SUBJECT. */
export async function bindClusterRole(api: Api, name: string, rules: unknown[], subject: Subject): Promise<void> {
  await api.ok('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name },
    rules,
  });
  await api.ok('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
    subjects: [subject.kind === 'ServiceAccount' ? subject : { apiGroup: 'rbac.authorization.k8s.io', ...subject }],
  });
}

export type KubeUser = { token: string } | { tokenFile: string } | { exec: { command: string; args: string[] } };

/** A kubeconfig file DIR/NAME.kubeconfig for the test control plane whose one user authenticates with USER. */
export function userKubeconfig(k: TestKube, dir: string, name: string, user: KubeUser): string {
  const file = join(dir, `${name}.kubeconfig`);
  const ca = readFileSync(k.cluster.caFile).toString('base64');
  const u = 'exec' in user ? { exec: { apiVersion: 'client.authentication.k8s.io/v1', interactiveMode: 'Never', ...user.exec } } : user;
  // JSON is YAML: kubectl and client-node read it as a kubeconfig.
  writeFileSync(
    file,
    JSON.stringify(
      {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'shoal-test', cluster: { server: k.cluster.server, 'certificate-authority-data': ca } }],
        users: [{ name, user: u }],
        contexts: [{ name: `${name}@shoal-test`, context: { cluster: 'shoal-test', user: name } }],
        'current-context': `${name}@shoal-test`,
      },
      null,
      2,
    ),
    { mode: 0o600 },
  );
  return file;
}

/** The API server's apiserver_request_total for RESOURCE and VERB, summed over codes: how many such calls it served. */
export async function apiRequests(api: Api, resource: string, verb: string): Promise<number> {
  const a = await api.req('GET', '/metrics');
  if (a.status !== 200) throw new Error(`GET /metrics: ${a.status}`);
  let sum = 0;
  for (const line of String(a.json).split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    if (!line.includes(`resource="${resource}"`) || !line.includes(`verb="${verb}"`)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export interface Started {
  d: Discover;
  logs: Array<Record<string, any>>;
}

/** discover --kubernetes in-process with the credential of KUBECONFIG (not the admin's), its log lines kept. */
export async function startDiscoverAs(t: Test, kubeconfigFile: string, opts: { wait?: boolean } = {}): Promise<Started> {
  const logs: Array<Record<string, any>> = [];
  const log = createLogger('discover', 'info', {
    write(line: string) {
      for (const l of line.split('\n')) {
        if (l === '') continue;
        try {
          logs.push(JSON.parse(l));
        } catch {
          logs.push({ msg: l });
        }
      }
      if (process.env.SHOAL_TEST_LOG) process.stderr.write(line);
    },
  });
  const d = await startDiscover({
    kubernetes: { kubeconfigFile, staleAfterMs: 30_000, tokenAudience: AUDIENCE },
    host: '127.0.0.1',
    port: 0,
    writeToken: OPERATOR_TOKEN,
    log,
  });
  t.teardown(() => d.close());
  if (opts.wait !== false) await d.ready;
  return { d, logs };
}
