// The Gateway API release pinned in gateway/go.mod: where its module and its conformance module sit in
// Go's module cache (downloaded on first use), and the CRD files of a release channel.
//   node scripts/gateway.ts crds [standard|experimental]   print the CRD files, one path a line
//   node scripts/gateway.ts echo-basic                      build the conformance echo server (prints its path)
// echo-basic (a `tool` of gateway/go.mod) goes to .cache/gateway/bin/<hash>/ (ignored), rebuilt only when
// the pins, the build recipe or the Go version change; the build is niced and runs one compile at a time.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { goMissing, root } from './kube.ts';

export const gatewayModule = join(root, 'gateway');
export const GATEWAY_API = 'sigs.k8s.io/gateway-api';
export const GATEWAY_CONFORMANCE = 'sigs.k8s.io/gateway-api/conformance';

const dirs = new Map<string, string>();

/** The folder of a module gateway/go.mod requires, in Go's module cache (downloaded when missing). */
export function moduleDir(path: string): string {
  const known = dirs.get(path);
  if (known !== undefined) return known;
  const missing = goMissing();
  if (missing) throw new Error(missing.replace('the Kubernetes control plane is', 'the Gateway API CRDs and conformance cases are'));
  execFileSync('go', ['mod', 'download', path], { cwd: gatewayModule, stdio: ['ignore', 'ignore', 'pipe'] });
  const dir = execFileSync('go', ['list', '-m', '-f', '{{.Dir}}', path], { cwd: gatewayModule, encoding: 'utf8' }).trim();
  if (dir === '') throw new Error(`go list found no folder for ${path} (gateway/go.mod)`);
  dirs.set(path, dir);
  return dir;
}

export type CrdChannel = 'standard' | 'experimental';

/** The CRD files of one channel (config/crd/<channel>/*.yaml), sorted; the ValidatingAdmissionPolicy file is left out. */
export function crdFiles(channel: CrdChannel = 'experimental'): string[] {
  const dir = join(moduleDir(GATEWAY_API), 'config', 'crd', channel);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !f.includes('_vap_'))
    .sort()
    .map((f) => join(dir, f));
}

export const ECHO_BASIC = `${GATEWAY_CONFORMANCE}/echo-basic`;
const cacheDir = join(root, '.cache', 'gateway');
/** Bumped when the build command below changes, so binaries built the old way are rebuilt. */
const RECIPE =
  'echo-basic-build-1: nice -n 10 go build -p 1 -trimpath -buildvcs=false -ldflags "-s -w" sigs.k8s.io/gateway-api/conformance/echo-basic';

type Log = (message: string) => void;
const stderrLog: Log = (m) => process.stderr.write(`${m}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function goVersion(): string {
  const missing = goMissing();
  if (missing) throw new Error(missing.replace('the Kubernetes control plane is', 'the conformance echo server is'));
  return execFileSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' }).trim();
}

function echoBuildHash(): string {
  const h = createHash('sha256').update(RECIPE).update('\0').update(goVersion());
  for (const f of ['go.mod', 'go.sum']) {
    let text = readFileSync(join(gatewayModule, f), 'utf8');
    if (f === 'go.mod') text = text.replace(/^[ \t]*\/\/.*\n/gm, ''); // its comments do not change what is built
    h.update('\0').update(f).update('\0').update(text);
  }
  return h.digest('hex').slice(0, 16);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The conformance echo server (sigs.k8s.io/gateway-api/conformance/echo-basic at the pinned release);
 * built the first time, test files running at once wait for one build (a lock folder with the builder's pid).
 */
export async function ensureEchoBasic(log: Log = stderrLog): Promise<string> {
  const out = join(cacheDir, 'bin', echoBuildHash());
  const binary = join(out, 'echo-basic');
  if (existsSync(binary)) return binary;
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
      else await sleep(1000);
      if (existsSync(binary)) return binary;
    }
  }
  const tmp = `${out}.tmp-${process.pid}`;
  try {
    if (existsSync(binary)) return binary;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    moduleDir(GATEWAY_CONFORMANCE); // downloads the module when missing, with a clear error without Go
    const what = `echo-basic (${GATEWAY_CONFORMANCE} as gateway/go.mod pins it)`;
    log(`gateway: building ${what} with ${goVersion()} into ${out} (niced, one compile at a time)`);
    const started = Date.now();
    const args = [
      '-n',
      '10',
      'go',
      'build',
      '-p',
      '1',
      '-trimpath',
      '-buildvcs=false',
      '-ldflags',
      '-s -w',
      '-o',
      join(tmp, 'echo-basic'),
      ECHO_BASIC,
    ];
    await new Promise<void>((resolveBuild, reject) => {
      const child = spawn('nice', args, { cwd: gatewayModule, stdio: ['ignore', 'ignore', 'pipe'] });
      let text = '';
      child.stderr.on('data', (d) => {
        text += d;
      });
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (code === 0) resolveBuild();
        else reject(new Error(`nice ${args.join(' ')} (in ${gatewayModule}) failed (${signal ?? `exit ${code}`}):\n${text.trim()}`));
      });
    });
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    const size = statSync(join(tmp, 'echo-basic')).size;
    writeFileSync(
      join(tmp, 'build.json'),
      `${JSON.stringify({ what, go: goVersion(), seconds, size, builtAt: new Date().toISOString() }, null, 2)}\n`,
    );
    renameSync(tmp, out);
    const parent = join(out, '..');
    for (const name of readdirSync(parent)) {
      if (/^[0-9a-f]{16}$/.test(name) && join(parent, name) !== out) rmSync(join(parent, name), { recursive: true, force: true });
    }
    log(`gateway: built ${what} in ${seconds} s (${(size / 1048576).toFixed(1)} MB)`);
    return binary;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    rmSync(lock, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === 'crds' && (arg === undefined || arg === 'standard' || arg === 'experimental')) {
    for (const f of crdFiles(arg ?? 'experimental')) process.stdout.write(`${f}\n`);
  } else if (cmd === 'echo-basic' && arg === undefined) {
    process.stdout.write(`${await ensureEchoBasic()}\n`);
  } else {
    process.stderr.write('usage: node scripts/gateway.ts crds [standard|experimental] | echo-basic\n');
    process.exitCode = 2;
  }
}
