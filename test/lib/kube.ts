// A real Kubernetes control plane for a test file (scripts/kube.ts: etcd, kube-apiserver and
// kube-controller-manager built from the official Go modules), with kubectl and Helm pointed at it.
//
//   const kube = kubeForFile(t, import.meta.filename);   // null: skipped, loudly, naming what is missing
//   if (kube) t.test('...', async (t) => { const k = await kube.up(); await k.kubectlOk(['get', 'ns']); });
//
// One control plane per test file: the first `up()` starts it (about 5 s once the binaries exist), the
// root test's teardown stops it with kubeDown. Its state lives in a folder under os.tmpdir(). It serves
// the Gateway API (the experimental channel's CRDs of the release gateway/go.mod pins, Established and
// listable before `up()` resolves) unless the file asks for none: kubeForFile(t, file, { gatewayApi: false }).
// The 13 CRDs (1.4 MB of YAML, their validation rules compiled by the API server) cost kube-apiserver about
// 4-4.5 CPU-seconds; they go in while kube-controller-manager starts, which hides part of it: on the shared
// 2-core machine, a start took a median 2 s longer at a load average of 4 (then waiting for Established
// only) and 6 s longer at 8 (Established and listable); node scripts/kube.ts up DIR with and without
// --no-gateway-api, six pairs each.
//
// When the toolchain is missing (no Go, openssl or kubectl), the file's tests are skipped with one line
// on stderr and a plan skip naming what is missing, and the line is appended to the file named by
// SHOAL_KUBE_SKIPPED when that is set, so CI can fail on skipped Kubernetes tests.
import { spawn, execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Test } from 'tap';
import { ensureHelm, goMissing, kubeCluster, kubeDown, kubeUp, root, type KubeCluster, type KubeUpOptions } from '../../scripts/kube.ts';

export const KUBECTL = existsSync('/usr/bin/kubectl') ? '/usr/bin/kubectl' : 'kubectl';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the child's stdin. */
  input?: string;
  timeoutMs?: number;
}

/** Runs FILE with ARGS to completion: exit code, stdout and stderr (never throws for a non-zero exit). */
export function run(file: string, args: string[], opts: RunOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.on('error', () => {}); // a child that exits without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

function commandMissing(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** What this machine lacks to run the Kubernetes tests, or null. */
export function kubeMissing(): string | null {
  const missing: string[] = [];
  const go = goMissing();
  if (go) missing.push(go);
  if (commandMissing('openssl', ['version'])) missing.push("no openssl (the control plane's certificates are made with it)");
  if (commandMissing(KUBECTL, ['version', '--client'])) missing.push(`no kubectl (${KUBECTL})`);
  return missing.length > 0 ? missing.join('; ') : null;
}

export class TestKube {
  readonly cluster: KubeCluster;
  readonly helmBinary: string;
  /** Helm's cache, config and data folders (kept out of the user's home). */
  private readonly helmHome: string;

  constructor(cluster: KubeCluster, helmBinary: string, helmHome: string) {
    this.cluster = cluster;
    this.helmBinary = helmBinary;
    this.helmHome = helmHome;
  }

  get kubeconfig(): string {
    return this.cluster.kubeconfig;
  }

  /** kubectl with the admin kubeconfig. */
  kubectl(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(KUBECTL, ['--kubeconfig', this.kubeconfig, ...args], opts);
  }

  /** Helm (built from kube/helm/go.mod) with the admin kubeconfig. */
  helm(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    const env = {
      ...process.env,
      KUBECONFIG: this.kubeconfig,
      HELM_CACHE_HOME: join(this.helmHome, 'cache'),
      HELM_CONFIG_HOME: join(this.helmHome, 'config'),
      HELM_DATA_HOME: join(this.helmHome, 'data'),
    };
    return run(this.helmBinary, args, { ...opts, env });
  }

  /** kubectl that must succeed: its stdout, or an error with its stderr. */
  async kubectlOk(args: string[], opts: RunOptions = {}): Promise<string> {
    return ok(`kubectl ${args.join(' ')}`, await this.kubectl(args, opts));
  }

  /** Helm that must succeed: its stdout, or an error with its stderr. */
  async helmOk(args: string[], opts: RunOptions = {}): Promise<string> {
    return ok(`helm ${args.join(' ')}`, await this.helm(args, opts));
  }

  /** `kubectl get ARGS -o json`, parsed. */
  async getJson(args: string[]): Promise<any> {
    return JSON.parse(await this.kubectlOk(['get', ...args, '-o', 'json']));
  }
}

function ok(what: string, r: RunResult): string {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}\n${r.stderr.trim()}\n${r.stdout.trim()}`.trim());
  return r.stdout;
}

export interface KubeForFile {
  /** The file's control plane: started by the first call, stopped by the root test's teardown. */
  up(): Promise<TestKube>;
}

/**
 * The control plane of the test file FILE (pass import.meta.filename), whose root test is T; or null
 * when the toolchain is missing, after planning the file as skipped with the reason (stderr too).
 */
export function kubeForFile(t: Test, file: string, opts: KubeUpOptions = {}): KubeForFile | null {
  const name = relative(root, file);
  const why = kubeMissing();
  if (why) {
    const line = `Kubernetes tests of ${name} skipped: ${why}`;
    process.stderr.write(`\n*** ${line} ***\n\n`);
    if (process.env.SHOAL_KUBE_SKIPPED) appendFileSync(process.env.SHOAL_KUBE_SKIPPED, `${line}\n`);
    t.plan(0, line);
    return null;
  }
  let started: Promise<TestKube> | null = null;
  let dir = '';
  let stopped = false;
  // A file killed by its timeout does not reach its teardown: the components run detached, so stop them here.
  const onExit = () => {
    if (stopped || !dir) return;
    const k = kubeCluster(join(dir, 'cluster'));
    for (const pid of Object.values(k?.pids ?? {})) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  return {
    up() {
      started ??= (async () => {
        dir = mkdtempSync(join(tmpdir(), 'shoal-kube-'));
        t.teardown(async () => {
          await kubeDown(join(dir, 'cluster'));
          stopped = true;
          rmSync(dir, { recursive: true, force: true });
          process.removeListener('exit', onExit);
        });
        // A build (the first on a machine: many minutes) and the start are reported on stderr.
        const helmBinary = await ensureHelm();
        const cluster = await kubeUp(join(dir, 'cluster'), undefined, opts);
        return new TestKube(cluster, helmBinary, join(dir, 'helm'));
      })();
      return started;
    },
  };
}
