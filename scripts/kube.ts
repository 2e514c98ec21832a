// A real Kubernetes control plane for the tests, the benchmarks and people: etcd, kube-apiserver and
// kube-controller-manager built from the official Go modules pinned in kube/go.mod (and Helm from
// kube/helm/go.mod), started on loopback with their own CA, serving certificates, service-account keys
// and an admin kubeconfig. No kubelet and no scheduler: a test binds Pods to a Node object itself
// (spec.nodeName) and sets their status through the status subresource, as a kubelet would.
//   npm run kube -- up DIR     build if needed, start in the background, install the Gateway API CRDs
//                              (experimental channel of the release gateway/go.mod pins; --no-gateway-api: none),
//                              write DIR/kubeconfig, print `ready`
//   npm run kube -- down DIR   stop them and remove what `up` wrote into DIR
//   npm run kube -- build      only build (prints the build's time)
// Binaries go to .cache/kube/bin/<hash>/ (ignored), rebuilt only when the pinned versions, the build recipe
// or the Go version change. Go's own caches (GOCACHE, GOMODCACHE) stay where `go env` puts them.
import { spawn, execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { load as parseYaml } from 'js-yaml';

export const root = resolve(import.meta.dirname, '..');
const kubeModule = join(root, 'kube');
const helmModule = join(root, 'kube', 'helm');
const cacheDir = join(root, '.cache', 'kube');
/** Bumped when the build command below changes, so binaries built the old way are rebuilt. */
const RECIPE = 'kube-build-1: go build -trimpath -buildvcs=false -ldflags "-s -w -X version"';

export interface KubeBinaries {
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
}

export interface KubeCluster {
  dir: string;
  /** https://127.0.0.1:PORT */
  server: string;
  /** The admin kubeconfig (client certificate in group system:masters). */
  kubeconfig: string;
  caFile: string;
  adminCertFile: string;
  adminKeyFile: string;
  /** http://127.0.0.1:PORT: etcd's client URL (its v3 JSON gateway too, e.g. /v3/kv/compaction). */
  etcdUrl: string;
  pids: Record<ComponentName, number>;
}

export type ComponentName = 'etcd' | 'kube-apiserver' | 'kube-controller-manager';
const COMPONENTS: ComponentName[] = ['etcd', 'kube-apiserver', 'kube-controller-manager'];

interface Component {
  binary: string;
  args: string[];
  log: string;
  pid: number;
}

interface State {
  server: string;
  etcdUrl: string;
  components: Record<ComponentName, Component>;
  /** Names under DIR that `up` wrote and `down` removes. */
  created: string[];
}

/** The controllers kube-controller-manager runs: enough for a cluster's objects to behave as in one. */
export const CONTROLLERS = [
  'serviceaccount-controller',
  'serviceaccount-token-controller',
  'root-ca-certificate-publisher-controller',
  'namespace-controller',
  'garbage-collector-controller',
  'clusterrole-aggregation-controller',
  'endpointslice-controller',
  'endpointslice-mirroring-controller',
  'endpoints-controller',
  'deployment-controller',
  'replicaset-controller',
  'daemonset-controller',
  'statefulset-controller',
  'job-controller',
];

export const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/16';
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

type Log = (message: string) => void;
const stderrLog: Log = (m) => process.stderr.write(`${m}\n`);

// ---------------------------------------------------------------------------------------------------
// Building

/** The version go.mod pins for a module, e.g. pinned(kubeModule, 'k8s.io/kubernetes') → 'v1.37.2'. */
export function pinnedVersion(moduleDir: string, path: string): string {
  const text = readFileSync(join(moduleDir, 'go.mod'), 'utf8');
  const m = new RegExp(`^\\s*(?:require\\s+)?${path.replace(/[.]/g, '\\.')}\\s+(v\\S+)`, 'm').exec(text);
  if (!m) throw new Error(`${moduleDir}/go.mod does not require ${path}`);
  return m[1];
}

/** Why Go cannot build here (no go command), or null. */
export function goMissing(): string | null {
  try {
    execFileSync('go', ['version'], { stdio: ['ignore', 'pipe', 'pipe'] });
    return null;
  } catch (err) {
    return `no Go toolchain (${(err as Error).message.split('\n')[0]}): the Kubernetes control plane is built from Go modules`;
  }
}

function goVersion(): string {
  const missing = goMissing();
  if (missing) throw new Error(missing);
  return execFileSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' }).trim();
}

function buildHash(moduleDir: string, files: string[]): string {
  const h = createHash('sha256').update(RECIPE).update('\0').update(goVersion());
  for (const f of ['go.mod', 'go.sum', ...files]) {
    let text = readFileSync(join(moduleDir, f), 'utf8');
    if (f === 'go.mod') text = text.replace(/^[ \t]*\/\/.*\n/gm, ''); // its comments do not change what is built
    h.update('\0').update(f).update('\0').update(text);
  }
  return h.digest('hex').slice(0, 16);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Builds PACKAGES of the module in moduleDir into `out` unless it is there already. Concurrent callers
 * (test files run in parallel) wait for one build: the first takes a lock directory, builds into a
 * temporary folder and renames it into place.
 */
async function buildOnce(what: string, moduleDir: string, out: string, packages: string[], ldflags: string, log: Log): Promise<void> {
  if (existsSync(out)) return;
  mkdirSync(join(out, '..'), { recursive: true });
  const lock = `${out}.lock`;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder = NaN;
      try {
        holder = Number(readFileSync(join(lock, 'pid'), 'utf8'));
      } catch {
        /* being written or removed */
      }
      if (Number.isInteger(holder) && !alive(holder)) rmSync(lock, { recursive: true, force: true });
      else await sleep(2000);
      if (existsSync(out)) return;
    }
  }
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    if (existsSync(out)) return;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    log(`kube: building ${what} with ${goVersion()} into ${out} (the first build takes many minutes)`);
    const started = Date.now();
    const args = ['build', '-trimpath', '-buildvcs=false', '-ldflags', `-s -w ${ldflags}`, '-o', `${tmp}/`, ...packages];
    const stderr = await new Promise<string>((resolveBuild, reject) => {
      const child = spawn('go', args, { cwd: moduleDir, stdio: ['ignore', 'ignore', 'pipe'] });
      let text = '';
      child.stderr.on('data', (d) => {
        text += d;
      });
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (code === 0) resolveBuild(text);
        else reject(new Error(`go ${args.join(' ')} (in ${moduleDir}) failed (${signal ?? `exit ${code}`}):\n${text.trim()}`));
      });
    });
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    const sizes = Object.fromEntries(readdirSync(tmp).map((f) => [f, statSync(join(tmp, f)).size]));
    writeFileSync(
      join(tmp, 'build.json'),
      `${JSON.stringify({ what, go: goVersion(), seconds, sizes, packages, ldflags, builtAt: new Date().toISOString(), stderr }, null, 2)}\n`,
    );
    renameSync(tmp, out);
    // Binaries of earlier pins (about 250 MB each) are not used again: only a change of the pins rebuilds.
    const parent = join(out, '..');
    for (const name of readdirSync(parent)) {
      if (/^[0-9a-f]{16}$/.test(name) && join(parent, name) !== out) rmSync(join(parent, name), { recursive: true, force: true });
    }
    const mb = Object.entries(sizes)
      .map(([f, s]) => `${f} ${(s / 1048576).toFixed(1)} MB`)
      .join(', ');
    log(`kube: built ${what} in ${seconds} s (${mb})`);
  } finally {
    rmSync(tmp, { recursive: true, force: true }); // left only by a failed build
    rmSync(lock, { recursive: true, force: true });
  }
}

/** etcd, kube-apiserver and kube-controller-manager as kube/go.mod pins them; builds them the first time. */
export async function ensureBuilt(log: Log = stderrLog): Promise<KubeBinaries> {
  const out = join(cacheDir, 'bin', buildHash(kubeModule, ['cmd/etcd/main.go']));
  const k8s = pinnedVersion(kubeModule, 'k8s.io/kubernetes');
  const etcd = pinnedVersion(kubeModule, 'go.etcd.io/etcd/server/v3');
  const [major, minor] = k8s.slice(1).split('.');
  // What Kubernetes' own build stamps (hack/lib/version.sh): the version the API server reports at /version.
  const ldflags = ['k8s.io/client-go/pkg/version', 'k8s.io/component-base/version']
    .flatMap((p) => [`-X ${p}.gitVersion=${k8s}`, `-X ${p}.gitMajor=${major}`, `-X ${p}.gitMinor=${minor}`, `-X ${p}.gitTreeState=clean`])
    .join(' ');
  await buildOnce(
    `kube-apiserver and kube-controller-manager (k8s.io/kubernetes ${k8s}), etcd (go.etcd.io/etcd/server/v3 ${etcd})`,
    kubeModule,
    out,
    ['k8s.io/kubernetes/cmd/kube-apiserver', 'k8s.io/kubernetes/cmd/kube-controller-manager', './cmd/etcd'],
    ldflags,
    log,
  );
  return {
    etcd: join(out, 'etcd'),
    kubeApiserver: join(out, 'kube-apiserver'),
    kubeControllerManager: join(out, 'kube-controller-manager'),
  };
}

/** helm as kube/helm/go.mod pins it; builds it the first time. */
export async function ensureHelm(log: Log = stderrLog): Promise<string> {
  const out = join(cacheDir, 'helm', buildHash(helmModule, []));
  const helm = pinnedVersion(helmModule, 'helm.sh/helm/v4');
  await buildOnce(
    `helm (helm.sh/helm/v4 ${helm})`,
    helmModule,
    out,
    ['helm.sh/helm/v4/cmd/helm'],
    `-X helm.sh/helm/v4/internal/version.version=${helm} -X helm.sh/helm/v4/internal/version.gitTreeState=clean`,
    log,
  );
  return join(out, 'helm');
}

// ---------------------------------------------------------------------------------------------------
// Certificates and keys

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new Error(`openssl ${args.join(' ')}: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`, { cause: err });
  }
}

/** A certificate NAME.crt/NAME.key signed by ca.crt, for SUBJECT, with the given extensions. */
function issue(dir: string, name: string, subject: string, extensions: string[]): void {
  openssl(
    [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      subject,
    ],
    dir,
  );
  writeFileSync(join(dir, `${name}.ext`), `${extensions.join('\n')}\n`);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '365',
      '-sha256',
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
  rmSync(join(dir, `${name}.csr`));
  rmSync(join(dir, `${name}.ext`));
}

const PKI_FILES = [
  'ca.crt',
  'ca.key',
  'ca.srl',
  'apiserver.crt',
  'apiserver.key',
  'admin.crt',
  'admin.key',
  'controller-manager.crt',
  'controller-manager.key',
  'sa.key',
  'sa.pub',
];

function makePki(dir: string): void {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '365',
      '-sha256',
      '-subj',
      '/CN=shoal-test-kubernetes-ca',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  const client = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth'];
  issue(dir, 'apiserver', '/CN=kube-apiserver', [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
  ]);
  issue(dir, 'admin', '/O=system:masters/CN=shoal-admin', client);
  issue(dir, 'controller-manager', '/CN=system:kube-controller-manager', client);
  // The service-account token signing key pair (ES256), shared by the API server and the token controller.
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
}

function kubeconfig(server: string, dir: string, user: string, cert: string, key: string): string {
  const b64 = (f: string) => readFileSync(join(dir, f)).toString('base64');
  return `apiVersion: v1
kind: Config
clusters:
- name: shoal-test
  cluster:
    server: ${server}
    certificate-authority-data: ${b64('ca.crt')}
users:
- name: ${user}
  user:
    client-certificate-data: ${b64(cert)}
    client-key-data: ${b64(key)}
contexts:
- name: ${user}@shoal-test
  context:
    cluster: shoal-test
    user: ${user}
current-context: ${user}@shoal-test
`;
}

// ---------------------------------------------------------------------------------------------------
// Processes

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function statePath(dir: string): string {
  return join(dir, 'state.json');
}

function readState(dir: string): State | null {
  try {
    return JSON.parse(readFileSync(statePath(dir), 'utf8')) as State;
  } catch {
    return null;
  }
}

function writeState(dir: string, state: State): void {
  writeFileSync(statePath(dir), `${JSON.stringify(state, null, 2)}\n`);
}

/** Whether PID is still the process we started from BINARY (a pid can be reused once it exits). */
function runs(pid: number, binary: string): boolean {
  if (!pid || !alive(pid)) return false;
  try {
    const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return argv0 === binary && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Starts one component in the background (its own session, so it outlives this process), log appended. */
function launch(c: Component): number {
  const fd = openSync(c.log, 'a');
  try {
    const child = spawn(c.binary, c.args, { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', () => {}); // reported by whoever waits for it
    child.unref();
    if (!child.pid) throw new Error(`could not start ${c.binary}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

interface TlsFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

function tlsFiles(dir: string): TlsFiles {
  return { ca: readFileSync(join(dir, 'ca.crt')), cert: readFileSync(join(dir, 'admin.crt')), key: readFileSync(join(dir, 'admin.key')) };
}

/** GET PATH from the API server with the admin certificate: the status and body. */
export function apiGet(server: string, tls: TlsFiles, path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  const url = new URL(path, server);
  return new Promise((resolveGet, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path: url.pathname + url.search, method: 'GET', agent: false, ...tls, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** METHOD PATH with a JSON BODY to the API server with the admin certificate: the status and body. */
export function apiSend(
  server: string,
  tls: TlsFiles,
  method: string,
  path: string,
  body: unknown,
  timeoutMs = 30_000,
): Promise<{ status: number; body: string }> {
  const url = new URL(path, server);
  const data = JSON.stringify(body);
  return new Promise((resolveSend, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        agent: false,
        ...tls,
        timeout: timeoutMs,
        headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': String(Buffer.byteLength(data)) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolveSend({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

/**
 * Installs the Gateway API CRDs of a channel (scripts/gateway.ts crdFiles: the release gateway/go.mod
 * pins, read from Go's module cache) into the control plane in DIR, and waits until every one is
 * Established and each served version answers a list. CRDs already there are left as they are.
 * Returns their names.
 */
export async function installGatewayCrds(
  dir: string,
  channel: 'standard' | 'experimental' = 'experimental',
  timeoutMs = 60_000,
): Promise<string[]> {
  dir = resolve(dir);
  const state = readState(dir);
  if (!state) throw new Error(`${dir}: no control plane (no state.json)`);
  // Imported here: scripts/gateway.ts imports this module.
  const { crdFiles } = await import('./gateway.ts');
  const tls = tlsFiles(dir);
  // All at once: the API server compiles each schema's validation rules as it stores it, and the
  // Established wait overlaps with the later ones.
  type Crd = {
    kind?: string;
    metadata?: { name?: string };
    spec?: { group?: string; names?: { plural?: string }; versions?: Array<{ name: string; served?: boolean }> };
  };
  const crds = await Promise.all(
    crdFiles(channel).map(async (file) => {
      const crd = parseYaml(readFileSync(file, 'utf8')) as Crd | null;
      if (crd?.kind !== 'CustomResourceDefinition' || !crd.metadata?.name) throw new Error(`${file}: not a CustomResourceDefinition`);
      const r = await apiSend(state.server, tls, 'POST', CRD_PATH, crd);
      if (r.status !== 201 && r.status !== 409)
        throw new Error(`create CRD ${crd.metadata.name} (${file}): ${r.status} ${r.body.slice(0, 300)}`);
      return crd;
    }),
  );
  const deadline = Date.now() + timeoutMs;
  for (const crd of crds) {
    const name = crd.metadata!.name!;
    for (;;) {
      const r = await apiGet(state.server, tls, `${CRD_PATH}/${name}`);
      const conditions =
        r.status === 200
          ? ((JSON.parse(r.body) as { status?: { conditions?: Array<{ type: string; status: string }> } }).status?.conditions ?? [])
          : [];
      if (conditions.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not Established within ${timeoutMs / 1000} s: ${JSON.stringify(conditions)}`);
      await sleep(50);
    }
    // Established is not yet listable: for a moment after it, a list answers 429 "storage is
    // (re)initializing" (the watch cache is filling). Wait for a list of each served version.
    for (const v of (crd.spec?.versions ?? []).filter((x) => x.served !== false)) {
      const path = `/apis/${crd.spec?.group}/${v.name}/${crd.spec?.names?.plural}?limit=1`;
      for (;;) {
        const r = await apiGet(state.server, tls, path);
        if (r.status === 200) break;
        if (Date.now() > deadline) throw new Error(`GET ${path}: still ${r.status} ${r.body.slice(0, 200)} after ${timeoutMs / 1000} s`);
        await sleep(50);
      }
    }
  }
  return crds.map((c) => c.metadata!.name!);
}

/** Polls CHECK until it returns true; fails early when the component died, with its log's tail. */
async function waitFor(what: string, c: Component, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (!runs(c.pid, c.binary)) throw new Error(`${what}: ${c.binary.split('/').pop()} exited; the end of ${c.log}:\n${logTail(c.log)}`);
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs / 1000} s (${last}); the end of ${c.log}:\n${logTail(c.log)}`);
    await sleep(100);
  }
}

async function waitReady(name: ComponentName, dir: string, state: State, timeoutMs = 90_000): Promise<void> {
  const c = state.components[name];
  if (name === 'etcd') {
    await waitFor('etcd /health', c, timeoutMs, async () => {
      const r = await fetch(`${state.etcdUrl}/health`, { signal: AbortSignal.timeout(2000) });
      return r.ok && ((await r.json()) as { health?: string }).health === 'true';
    });
  } else if (name === 'kube-apiserver') {
    const tls = tlsFiles(dir);
    await waitFor('kube-apiserver /readyz', c, timeoutMs, async () => (await apiGet(state.server, tls, '/readyz')).status === 200);
  } else {
    // The controllers work once the ServiceAccount controller has made the default namespace's account.
    const tls = tlsFiles(dir);
    await waitFor(
      'kube-controller-manager (the default ServiceAccount)',
      c,
      timeoutMs,
      async () => (await apiGet(state.server, tls, '/api/v1/namespaces/default/serviceaccounts/default')).status === 200,
    );
  }
}

/**
 * Stops one component: SIGTERM, then SIGKILL after graceMs; for tests that restart the API server or etcd.
 * kube-apiserver with watches open (kube-controller-manager's) takes 60 s to stop gracefully (its HTTP
 * server's shutdown timeout): pass graceMs 70_000 for a graceful stop, or 0 for a crash.
 */
export async function stopComponent(dir: string, name: ComponentName, graceMs = 5_000): Promise<void> {
  const state = readState(dir);
  const c = state?.components[name];
  if (!c || !runs(c.pid, c.binary)) return;
  process.kill(c.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (runs(c.pid, c.binary) && Date.now() < deadline) await sleep(50);
  if (runs(c.pid, c.binary)) {
    process.kill(c.pid, 'SIGKILL');
    while (runs(c.pid, c.binary)) await sleep(20);
  }
}

/** Starts one component again with the arguments `up` gave it (same ports, same data), and waits for it. */
export async function startComponent(dir: string, name: ComponentName): Promise<void> {
  const state = readState(dir);
  if (!state) throw new Error(`${dir}: no control plane (no state.json)`);
  const c = state.components[name];
  if (runs(c.pid, c.binary)) return;
  c.pid = launch(c);
  writeState(dir, state);
  await waitReady(name, dir, state);
}

/** The running control plane in DIR, or null. */
export function kubeCluster(dir: string): KubeCluster | null {
  const state = readState(dir);
  if (!state) return null;
  const pids = Object.fromEntries(COMPONENTS.map((n) => [n, state.components[n].pid])) as Record<ComponentName, number>;
  return {
    dir,
    server: state.server,
    kubeconfig: join(dir, 'kubeconfig'),
    caFile: join(dir, 'ca.crt'),
    adminCertFile: join(dir, 'admin.crt'),
    adminKeyFile: join(dir, 'admin.key'),
    etcdUrl: state.etcdUrl,
    pids,
  };
}

/**
 * Starts etcd, kube-apiserver and kube-controller-manager in the background with their state in DIR and
 * returns once the API server is ready and the controllers work. They keep running after this process
 * exits: kubeDown(DIR) stops them.
 */
export interface KubeUpOptions {
  /** Install the Gateway API CRDs (experimental channel) and wait until they are Established and listable; default true. */
  gatewayApi?: boolean;
}

export async function kubeUp(dir: string, log: Log = stderrLog, opts: KubeUpOptions = {}): Promise<KubeCluster> {
  dir = resolve(dir);
  const bins = await ensureBuilt(log);
  const old = readState(dir);
  if (old && COMPONENTS.some((n) => runs(old.components[n].pid, old.components[n].binary))) {
    throw new Error(`${dir}: a control plane is running there already (npm run kube -- down ${dir} first)`);
  }
  if (old) await kubeDown(dir);
  mkdirSync(dir, { recursive: true });
  const started = Date.now();
  makePki(dir);
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const server = `https://127.0.0.1:${apiPort}`;
  const f = (name: string) => join(dir, name);
  writeFileSync(f('kubeconfig'), kubeconfig(server, dir, 'shoal-admin', 'admin.crt', 'admin.key'), { mode: 0o600 });
  writeFileSync(
    f('controller-manager.kubeconfig'),
    kubeconfig(server, dir, 'system:kube-controller-manager', 'controller-manager.crt', 'controller-manager.key'),
    { mode: 0o600 },
  );
  const peer = `http://127.0.0.1:${peerPort}`;
  const components: Record<ComponentName, Component> = {
    etcd: {
      binary: bins.etcd,
      log: f('etcd.log'),
      pid: 0,
      args: [
        '--name=shoal-test',
        `--data-dir=${f('etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=shoal-test=${peer}`,
        // Test data: thrown away afterwards, so no fsync (the machine's disk is shared by parallel tests).
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
    },
    'kube-apiserver': {
      binary: bins.kubeApiserver,
      log: f('kube-apiserver.log'),
      pid: 0,
      args: [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        // The API server refuses to publish a loopback address as the `kubernetes` Service's endpoint, and
        // there is no other: that Service keeps no endpoints (no Pod here talks to it through a ClusterIP).
        '--endpoint-reconciler-type=none',
        `--tls-cert-file=${f('apiserver.crt')}`,
        `--tls-private-key-file=${f('apiserver.key')}`,
        `--client-ca-file=${f('ca.crt')}`,
        '--authorization-mode=Node,RBAC',
        '--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,NodeRestriction,' +
          'MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota',
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${f('sa.pub')}`,
        `--service-account-signing-key-file=${f('sa.key')}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        '--allow-privileged=true',
        '--profiling=false',
      ],
    },
    'kube-controller-manager': {
      binary: bins.kubeControllerManager,
      log: f('kube-controller-manager.log'),
      pid: 0,
      args: [
        `--kubeconfig=${f('controller-manager.kubeconfig')}`,
        `--controllers=${CONTROLLERS.join(',')}`,
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${f('sa.key')}`,
        `--root-ca-file=${f('ca.crt')}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        '--leader-elect=false',
        '--secure-port=0',
        '--profiling=false',
      ],
    },
  };
  const state: State = {
    server,
    etcdUrl,
    components,
    created: [
      ...PKI_FILES,
      'kubeconfig',
      'controller-manager.kubeconfig',
      'etcd',
      'etcd.log',
      'kube-apiserver.log',
      'kube-controller-manager.log',
      'state.json',
    ],
  };
  writeState(dir, state);
  let crds: Promise<string> | null = null;
  try {
    for (const name of COMPONENTS) {
      components[name].pid = launch(components[name]);
      writeState(dir, state);
      await waitReady(name, dir, state);
      // The CRDs go in once the API server answers, while kube-controller-manager starts.
      if (name === 'kube-apiserver' && opts.gatewayApi !== false) {
        const crdStart = Date.now();
        crds = installGatewayCrds(dir).then(
          (names) =>
            `, ${names.length} Gateway API CRDs served ${((Date.now() - crdStart) / 1000).toFixed(1)} s after the API server was ready`,
        );
        crds.catch(() => undefined); // awaited below
      }
    }
    if (crds) crds = Promise.resolve(await crds);
  } catch (err) {
    await crds?.catch(() => undefined);
    await kubeDown(dir, { keepLogs: true });
    throw err;
  }
  log(
    `kube: up in ${((Date.now() - started) / 1000).toFixed(1)} s${crds ? await crds : ''}: ${server}, etcd ${etcdUrl}, kubeconfig ${f('kubeconfig')}`,
  );
  return kubeCluster(dir)!;
}

/** Stops what kubeUp(DIR) started and removes what it wrote (with keepLogs, the logs stay). */
export async function kubeDown(dir: string, opts: { keepLogs?: boolean } = {}): Promise<void> {
  dir = resolve(dir);
  const state = readState(dir);
  if (!state) return;
  for (const name of [...COMPONENTS].reverse()) await stopComponent(dir, name);
  for (const name of state.created) {
    if (opts.keepLogs && name.endsWith('.log')) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
  }
  try {
    rmdirSync(dir); // only when nothing else is left in it
  } catch {
    /* not empty, or gone */
  }
}

// Not a top-level await: installGatewayCrds imports scripts/gateway.ts, which imports this module, and
// that import would wait for this module's evaluation to finish, which would wait for it.
async function main(): Promise<void> {
  const [command, dir] = process.argv.slice(2);
  try {
    if (command === 'build') {
      const bins = await ensureBuilt();
      const helm = await ensureHelm();
      process.stdout.write(`${[bins.etcd, bins.kubeApiserver, bins.kubeControllerManager, helm].join('\n')}\n`);
    } else if (command === 'up' && dir) {
      const extra = process.argv.slice(4);
      if (extra.some((a) => a !== '--no-gateway-api'))
        throw new Error(`up: unknown option ${extra.find((a) => a !== '--no-gateway-api')} (only --no-gateway-api)`);
      await kubeUp(dir, stderrLog, { gatewayApi: !extra.includes('--no-gateway-api') });
      process.stdout.write('ready\n');
    } else if (command === 'down' && dir) {
      await kubeDown(dir);
    } else {
      process.stderr.write('usage: npm run kube -- up DIR [--no-gateway-api] | down DIR | build\n');
      process.exit(2);
    }
  } catch (err) {
    process.stderr.write(`kube: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

if (import.meta.main) void main();
