// `shoal get NAMESPACE/APP`: what an app's sidecar receives, as a table, JSON or YAML.
import { stringify as toYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import type { FlagSpec } from '../shared/flags.ts';
import { UsageError } from '../shared/flags.ts';
import type { HeaderModifier, OutboundListener, Route, Snapshot } from '../shared/snapshot.ts';
import { identitySection } from './identityView.ts';
import { kubeconfigToken } from './kubeconfigToken.ts';

export const getFlags: FlagSpec[] = [
  { name: 'discover', type: 'string', default: 'http://127.0.0.1:6100', description: 'Base URL of discover' },
  { name: 'output', short: 'o', type: 'string', default: 'table', description: 'Output format: table, json or yaml' },
  {
    name: 'token',
    type: 'string',
    default: '',
    description:
      "Bearer token for discover (the operator token, or a Kubernetes token allowed to read the app); default: the kubeconfig user's token",
  },
  { name: 'token-file', type: 'string', default: '', description: 'A file holding the bearer token (e.g. from kubectl create token)' },
  {
    name: 'kubeconfig',
    type: 'string',
    default: '',
    description:
      "Read as this kubeconfig's user (its token, token file or exec plugin): default $KUBECONFIG, then ~/.kube/config, used when discover asks for a token",
  },
  { name: 'context', type: 'string', default: '', description: 'The kubeconfig context whose user reads (default: the current context)' },
];

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('   ')).join('\n');
}

/** A route's match: mesh-config routes as before (domains, prefix, [header=value]); Gateway API routes by their fields. */
export function matchText(r: Route): string {
  if (r.path === undefined && r.method === undefined && r.query === undefined) {
    return `${r.domains.join(',')}${r.prefix}${r.headers.map((h) => ` [${h.name}${h.type === 'RegularExpression' ? '~' : '='}${h.value}]`).join('')}`;
  }
  const parts: string[] = [];
  if (r.method) parts.push(r.method);
  const p = r.path ?? { type: 'PathPrefix', value: r.prefix };
  parts.push(p.type === 'Exact' ? `path = ${p.value}` : p.type === 'PathPrefix' ? `path ${p.value}*` : `path ~ ${p.value}`);
  for (const h of r.headers) parts.push(`[${h.name}${h.type === 'RegularExpression' ? '~' : '='}${h.value}]`);
  for (const q of r.query ?? []) parts.push(`?${q.name}${q.type === 'RegularExpression' ? '~' : '='}${q.value}`);
  return parts.join(' ');
}

function modifierText(what: string, m: HeaderModifier | undefined): string[] {
  if (!m) return [];
  return [
    ...(m.set ?? []).map((h) => `${what} set ${h.name}: ${h.value}`),
    ...(m.add ?? []).map((h) => `${what} add ${h.name}: ${h.value}`),
    ...(m.remove ?? []).map((n) => `${what} remove ${n}`),
  ];
}

/** What a route does with a request it matches. */
export function actionText(r: Route): string {
  const out: string[] = [];
  if (r.redirect) {
    const d = r.redirect;
    const to = [
      d.scheme && `${d.scheme}://`,
      d.hostname,
      d.port && `:${d.port}`,
      d.path && (d.path.type === 'ReplaceFullPath' ? d.path.value : `${d.path.value}(+rest)`),
    ]
      .filter(Boolean)
      .join('');
    out.push(`redirect ${d.statusCode}${to ? ` ${to}` : ''}`);
  } else if (r.backends.length === 0) {
    out.push('500 (no backend)');
  } else {
    const total = r.backends.reduce((n, b) => n + b.weight, 0);
    out.push(
      r.backends
        .map((b) => {
          let t = b.unresolved ? `${b.cluster} (unresolved: 500)` : b.cluster;
          if (r.backends.length > 1) t += ` ${total > 0 ? Math.round((b.weight / total) * 1000) / 10 : 0}%`;
          const extra = [
            ...modifierText('request', b.requestHeaders),
            ...modifierText('response', b.responseHeaders),
            ...(b.mirrors ?? []).map((m) => `mirror ${m.cluster}${m.percent !== undefined ? ` ${m.percent}%` : ''}`),
          ];
          return extra.length > 0 ? `${t} {${extra.join('; ')}}` : t;
        })
        .join(', '),
    );
  }
  if (r.rewrite)
    out.push(
      `rewrite${r.rewrite.hostname ? ` host ${r.rewrite.hostname}` : ''}${r.rewrite.path ? ` path ${r.rewrite.path.type === 'ReplaceFullPath' ? r.rewrite.path.value : `${r.rewrite.path.value}(+rest)`}` : ''}`,
    );
  out.push(...modifierText('request', r.requestHeaders), ...modifierText('response', r.responseHeaders));
  for (const m of r.mirrors ?? []) out.push(`mirror ${m.cluster}${m.percent !== undefined ? ` ${m.percent}%` : ''}`);
  if (r.timeoutMs !== undefined) out.push(`timeout ${r.timeoutMs === 0 ? 'none' : `${r.timeoutMs}ms`}`);
  if (r.backendTimeoutMs !== undefined) out.push(`per-try timeout ${r.backendTimeoutMs}ms`);
  if (r.retry)
    out.push(
      `retry ${r.retry.attempts}x${r.retry.codes.length > 0 ? ` on ${r.retry.codes.join(',')}` : ''}${r.retry.backoffMs > 0 ? ` backoff ${r.retry.backoffMs}ms` : ''}`,
    );
  return out.join('; ');
}

/**
 * ROUTES: for each dependency's listener, the routes in force in the order they are tried, and where each
 * came from (a Gateway API route's rule and match, or the app's mesh config). The 127.0.0.1 aliases of a
 * dependency's listener carry the same routes and are left out.
 */
export function routesSection(s: Snapshot): string[] {
  const listeners = s.outbound.filter((l: OutboundListener) => l.mode === 'l7' && !l.name.startsWith('127.0.0.1:'));
  if (listeners.length === 0) return ['  (none)'];
  const out: string[] = [];
  for (const l of listeners) {
    out.push(`  ${l.name} (${l.address}:${l.port})`);
    l.routes.forEach((r, i) => {
      out.push(`    ${i + 1}. ${matchText(r)} -> ${actionText(r)}`);
      out.push(`       from ${r.source ?? 'mesh config'}`);
    });
  }
  return out;
}

export function renderSnapshot(s: Snapshot): string {
  const out: string[] = [];
  out.push(`APP ${s.namespace}/${s.app}   PLUGIN ${s.pluginId}   VERSION ${s.version}   SCHEMA ${s.schemaVersion}`);
  if (s.status.errors.length > 0) {
    out.push('', 'PROBLEMS');
    for (const e of s.status.errors) out.push(`  ${e}`);
  }
  if (s.identity) out.push('', ...identitySection(s)); // workload identity (docs/identity.md)
  out.push('', 'INBOUND');
  out.push(
    s.inbound.length === 0
      ? '  (none)'
      : table([
          ['LISTEN', 'TO', 'PROTOCOL', 'MODE', 'LIMITS'],
          ...s.inbound.map((l) => [
            `0.0.0.0:${l.listenPort}`,
            `127.0.0.1:${l.port}`,
            l.protocol,
            l.mode,
            l.limits.rps || l.limits.connections ? `rps ${l.limits.rps} burst ${l.limits.burst} conns ${l.limits.connections}` : '-',
          ]),
        ]),
  );
  out.push('', 'OUTBOUND');
  out.push(
    s.outbound.length === 0
      ? '  (none)'
      : table([
          ['LISTEN', 'PROTOCOL', 'MODE', 'ROUTES'],
          ...s.outbound.map((l) => [
            `${l.address}:${l.port}`,
            l.protocol,
            l.mode,
            l.routes
              .map((r) => {
                const to = r.backends.map((b) => (r.backends.length > 1 ? `${b.cluster} ${b.weight}` : b.cluster)).join(', ');
                return `${matchText(r)} -> ${to}`;
              })
              .join('; '),
          ]),
        ]),
  );
  out.push('', 'ROUTES');
  out.push(...routesSection(s));
  out.push('', 'CLUSTERS');
  out.push(
    s.clusters.length === 0
      ? '  (none)'
      : table([
          ['CLUSTER', 'PROTOCOL', 'LB', 'ENDPOINTS'],
          ...s.clusters.map((c) => [
            c.name,
            c.protocol,
            c.lbPolicy,
            c.endpoints.length === 0
              ? '(none)'
              : c.endpoints
                  .map(
                    (e) =>
                      `${e.address}:${e.port}${e.weight !== 1 ? ` w${e.weight}` : ''}${e.ready ? '' : e.terminating ? ' (terminating)' : ' (not ready)'}${e.meshed ? ' (mtls)' : ''}`,
                  )
                  .join(' '),
          ]),
        ]),
  );
  out.push('', 'DNS');
  const byAddress = new Map<string, string[]>();
  for (const d of s.dns) byAddress.set(d.address, [...(byAddress.get(d.address) ?? []), d.name]);
  out.push(byAddress.size === 0 ? '  (none)' : table([['ADDRESS', 'NAMES'], ...[...byAddress].map(([a, names]) => [a, names.join(' ')])]));
  return out.join('\n') + '\n';
}

export async function getCommand(positional: string[], values: Record<string, unknown>): Promise<string> {
  const target = positional[0];
  const m = /^([a-z0-9][-a-z0-9]*)\/([a-z0-9][-a-z0-9]*)$/.exec(target ?? '');
  if (!m) throw new UsageError(`expected NAMESPACE/APP, got ${JSON.stringify(target ?? '')}`);
  const format = String(values.output);
  if (!['table', 'json', 'yaml'].includes(format))
    throw new UsageError(`invalid --output=${JSON.stringify(format)}: expected table, json or yaml`);
  const base = String(values.discover).replace(/\/+$/, '');
  const url = `${base}/v2/snapshot/${m[1]}/${m[2]}`;
  let token = String(values.token ?? '');
  const tokenFile = String(values['token-file'] ?? '');
  if (tokenFile !== '') {
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read --token-file ${JSON.stringify(tokenFile)}: ${(err as Error).message}`);
    }
  }
  const kube = { file: String(values.kubeconfig ?? ''), context: String(values.context ?? '') };
  const kubeChosen = kube.file !== '' || kube.context !== '';
  if (token !== '' && kubeChosen) throw new UsageError('give --token/--token-file or --kubeconfig/--context, not both');
  const get = async (bearerToken: string) => {
    try {
      const res = await request(url, {
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
        headers: bearerToken ? { authorization: `Bearer ${bearerToken}` } : {},
      });
      return { status: res.statusCode, text: await res.body.text() };
    } catch (err) {
      throw new Error(`cannot reach discover at ${base}: ${(err as Error).message}`, { cause: err });
    }
  };
  // The kubeconfig's credential is a key to the API server: it is sent only to a discover that asks
  // for a token (401), or at once when --kubeconfig or --context says to.
  let kubeUser = '';
  const fromKubeconfig = async (why: string) => {
    try {
      const k = await kubeconfigToken(kube);
      kubeUser = k.where;
      return k.token;
    } catch (err) {
      throw new Error(`${why}: ${(err as Error).message}`, { cause: err });
    }
  };
  if (token === '' && kubeChosen) token = await fromKubeconfig('no token for discover from the kubeconfig');
  let res = await get(token);
  if (res.status === 401 && token === '')
    res = await get(
      await fromKubeconfig(`discover at ${base} wants a token (--token-file, or your kubeconfig's) and the kubeconfig has none it can use`),
    );
  const text = res.text;
  // discover's error bodies say why (a refused mesh config, a token that may not read the app).
  let why = text.slice(0, 500);
  try {
    why = (JSON.parse(text) as { message?: string }).message ?? why;
  } catch {
    /* not JSON: the raw text */
  }
  const as = kubeUser ? ` (reading as ${kubeUser})` : '';
  if (res.status === 404) throw new Error(`discover at ${base} has no app ${m[1]}/${m[2]}: ${why}`);
  if (res.status === 401) throw new Error(`discover at ${base} refused the token${as}: ${why}`);
  if (res.status === 403) throw new Error(`discover at ${base} denied reading ${m[1]}/${m[2]}${as}: ${why}`);
  if (res.status !== 200) throw new Error(`discover at ${base} answered ${res.status}${as}: ${why}`);
  const snap = JSON.parse(text) as Snapshot;
  if (format === 'json') return JSON.stringify(snap, null, 2) + '\n';
  if (format === 'yaml') return toYaml(snap);
  return renderSnapshot(snap);
}
