// The container image, built here with podman from the repository's Dockerfile (the one users build):
//   npm run image                  build localhost/shoal:<package version>; prints the build time and the size
//   npm run image -- contents      what is in the image, with sizes
//   npm run image -- base          only make the base images the Dockerfile names (when missing)
// No registry is reached for images: the base images the Dockerfile names (node:24-bookworm, node:24-bookworm-slim)
// are made here when missing, from a Debian bookworm root filesystem (debootstrap, minbase as Debian's slim
// images) with Node from the npm package `node` (this project's devDependency) and npm from the npm package
// `npm`. The build itself still fetches the npm packages and tini (npm ci, apt-get) as any build does.
// podman runs with the project's settings (image/*.conf, paths filled in), its storage in .cache/image (ignored),
// never with the machine's /etc/containers.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '..');
export const cacheDir = join(root, '.cache', 'image');
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version as string;
export const IMAGE = `localhost/shoal:${version}`;
/** npm in the locally made Node images (the official ones ship npm beside node). */
const NPM_VERSION = '11.21.3';
const DEBIAN_MIRROR = process.env.SHOAL_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
/** Bumped when the recipe of the local root filesystem changes, so an old one is remade. */
const ROOTFS_RECIPE = 'bookworm-minbase-slim-2';

type Log = (message: string) => void;
const stderrLog: Log = (m) => process.stderr.write(`${m}\n`);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  /** Copy the child's stderr (and stdout) to ours as it comes, e.g. for a build's progress. */
  echo?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** FILE ARGS to completion: exit code, stdout and stderr (never throws for a non-zero exit). */
export function run(file: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      if (opts.echo) process.stderr.write(d);
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
      if (opts.echo) process.stderr.write(d);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

function ok(what: string, r: RunResult): string {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n')}`);
  return r.stdout;
}

function commandMissing(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** Debian packages the image build and tests need, by the command that shows each is there. */
export const PODMAN_PACKAGES: Array<[string, string]> = [
  ['podman', 'podman'],
  ['runc', 'runc'],
  ['netavark', 'netavark'],
  ['aardvark-dns', 'aardvark-dns'],
  ['catatonit', 'catatonit'],
  ['debootstrap', 'debootstrap'],
];

/** What this machine lacks to build and run the image, or null. */
export function podmanMissing(): string | null {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root (the image tests run rootful podman with their own storage)';
  const missing = PODMAN_PACKAGES.filter(([cmd]) => {
    if (cmd === 'netavark' || cmd === 'aardvark-dns') return !existsSync(`/usr/lib/podman/${cmd}`) && commandMissing(cmd, ['--version']);
    if (cmd === 'debootstrap') return !existsSync('/usr/sbin/debootstrap');
    return commandMissing(cmd, ['--version']);
  }).map(([, pkg]) => pkg);
  return missing.length > 0 ? `missing Debian packages: ${missing.join(' ')} (apt-get install ${missing.join(' ')})` : null;
}

let envMemo: NodeJS.ProcessEnv | null = null;

/** The environment that points podman at the project's settings and storage (written on first use). */
export function podmanEnv(): NodeJS.ProcessEnv {
  if (envMemo) return envMemo;
  for (const dir of ['', 'tmp', 'networks', 'storage', 'run']) mkdirSync(join(cacheDir, dir), { recursive: true });
  const files: Record<string, string> = {};
  for (const name of ['containers.conf', 'storage.conf', 'registries.conf']) {
    const text = readFileSync(join(root, 'image', name), 'utf8').replaceAll('@CACHE@', cacheDir);
    const out = join(cacheDir, name);
    if (!existsSync(out) || readFileSync(out, 'utf8') !== text) writeFileSync(out, text);
    files[name] = out;
  }
  envMemo = {
    ...process.env,
    CONTAINERS_CONF: files['containers.conf'],
    CONTAINERS_STORAGE_CONF: files['storage.conf'],
    CONTAINERS_REGISTRIES_CONF: files['registries.conf'],
  };
  return envMemo;
}

/** podman with the project's settings. */
export function podman(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('podman', args, { ...opts, env: podmanEnv() });
}

/** podman that must succeed: its stdout, or an error naming the command and its stderr. */
export async function podmanOk(args: string[], opts: RunOptions = {}): Promise<string> {
  return ok(`podman ${args.join(' ')}`, await podman(args, opts));
}

export async function imageExists(ref: string): Promise<boolean> {
  return (await podman(['image', 'exists', ref])).code === 0;
}

/** The images the Dockerfile's FROM lines name (not its own stages), e.g. node:24-bookworm. */
export function baseImagesOf(dockerfile: string): string[] {
  const stages = new Set<string>();
  const bases: string[] = [];
  for (const line of dockerfile.split('\n')) {
    const m = /^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (!m) continue;
    if (!stages.has(m[1]) && !bases.includes(m[1])) bases.push(m[1]);
    if (m[2]) stages.add(m[2]);
  }
  return bases;
}

/** A short Docker Hub name as podman stores it: node:24 -> docker.io/library/node:24. */
export function fullName(ref: string): string {
  const first = ref.split('/')[0];
  if (ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return ref;
  return `docker.io/${ref.includes('/') ? '' : 'library/'}${ref}`;
}

/** The Node binary the npm package `node` installed (node_modules/node/bin/node), with its version. */
function nodeBinary(): { path: string; version: string } {
  const path = join(root, 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(path)) throw new Error(`${path} is missing: run npm ci (the devDependency "node" ships Node's Linux binary)`);
  const v = execFileSync(path, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
  if (!v.startsWith('24.')) throw new Error(`${path} is Node ${v}, the Dockerfile's base images are Node 24`);
  return { path, version: v };
}

async function sh(what: string, file: string, args: string[], log: Log, timeoutMs = 30 * 60_000): Promise<string> {
  log(`$ ${file} ${args.join(' ')}`);
  return ok(what, await run(file, args, { timeoutMs }));
}

/**
 * A Debian bookworm root filesystem as Debian's slim images are made: debootstrap's minbase, no docs, man
 * pages or locales (with dpkg told to keep them out), no apt lists; sources as in the official image.
 * Cached in .cache/image/bookworm (remade when ROOTFS_RECIPE changes).
 */
async function ensureRootfs(log: Log): Promise<string> {
  const dir = join(cacheDir, 'bookworm');
  const stamp = join(cacheDir, 'bookworm.recipe');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === ROOTFS_RECIPE && existsSync(join(dir, 'usr', 'bin', 'apt-get'))) return dir;
  const started = Date.now();
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  rmSync(stamp, { force: true });
  await sh('debootstrap', '/usr/sbin/debootstrap', ['--variant=minbase', 'bookworm', tmp, DEBIAN_MIRROR], log);
  writeFileSync(
    join(tmp, 'etc', 'dpkg', 'dpkg.cfg.d', 'docker'),
    [
      'path-exclude /usr/share/doc/*',
      'path-include /usr/share/doc/*/copyright',
      'path-exclude /usr/share/man/*',
      'path-exclude /usr/share/groff/*',
      'path-exclude /usr/share/info/*',
      'path-exclude /usr/share/locale/*',
      'path-exclude /usr/share/lintian/*',
      'path-exclude /usr/share/linda/*',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(tmp, 'etc', 'apt', 'apt.conf.d', 'docker-clean'),
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\nBinary::apt::APT::Keep-Downloaded-Packages "false";\n',
  );
  // As Debian's container images: no translations downloaded, no suggested packages kept.
  writeFileSync(join(tmp, 'etc', 'apt', 'apt.conf.d', 'docker-no-languages'), 'Acquire::Languages "none";\n');
  writeFileSync(join(tmp, 'etc', 'apt', 'apt.conf.d', 'docker-autoremove-suggests'), 'Apt::AutoRemove::SuggestsImportant "false";\n');
  rmSync(join(tmp, 'etc', 'apt', 'sources.list'), { force: true });
  writeFileSync(
    join(tmp, 'etc', 'apt', 'sources.list.d', 'debian.sources'),
    [
      'Types: deb',
      'URIs: http://deb.debian.org/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
      '',
      'Types: deb',
      'URIs: http://deb.debian.org/debian-security',
      'Suites: bookworm-security',
      'Components: main',
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
      '',
    ].join('\n'),
  );
  await sh(
    'slimming the root filesystem',
    'sh',
    [
      '-c',
      [
        `cd '${tmp}'`,
        'find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete',
        'find usr/share/doc -mindepth 1 -type d -empty -delete',
        'rm -rf usr/share/man/* usr/share/groff/* usr/share/info/* usr/share/locale/* usr/share/lintian/* usr/share/linda/*',
        'rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb var/log/*.log var/log/apt/* tmp/*',
      ].join(' && '),
    ],
    log,
  );
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  writeFileSync(stamp, ROOTFS_RECIPE);
  log(`bookworm root filesystem made in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return dir;
}

/** npm's own package (it bundles its dependencies), fetched once with npm pack. */
async function ensureNpmPackage(log: Log): Promise<string> {
  const tgz = join(cacheDir, `npm-${NPM_VERSION}.tgz`);
  if (existsSync(tgz)) return tgz;
  await sh('npm pack', 'npm', ['pack', `npm@${NPM_VERSION}`, '--pack-destination', cacheDir, '--silent'], log, 5 * 60_000);
  if (!existsSync(tgz)) throw new Error(`npm pack npm@${NPM_VERSION} did not write ${tgz}`);
  return tgz;
}

/**
 * Makes the base images the Dockerfile names and the machine lacks, as the official node images lay them
 * out: node in /usr/local/bin, npm in /usr/local/lib/node_modules, a user `node` (1000), CMD node. One
 * image serves both names here: shoal's build stage needs only node and npm, not the compilers of the full
 * node:24-bookworm.
 */
export async function ensureBaseImages(log: Log = stderrLog): Promise<void> {
  const bases = baseImagesOf(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  const missing: string[] = [];
  for (const ref of bases) if (!(await imageExists(fullName(ref)))) missing.push(ref);
  if (missing.length === 0) return;
  for (const ref of missing) {
    if (!/^node:24[-.\w]*$/.test(ref))
      throw new Error(`the Dockerfile names ${ref}: only node:24* base images can be made here (no registry is reached)`);
  }
  const started = Date.now();
  log(`making base images here (never pulled): ${missing.join(', ')}`);
  const node = nodeBinary();
  const rootfs = await ensureRootfs(log);
  const npmTgz = await ensureNpmPackage(log);
  // The Node layer goes into a copy, so the cached Debian tree stays as debootstrap and slimming left it.
  const tree = join(cacheDir, 'node-rootfs');
  rmSync(tree, { recursive: true, force: true });
  await sh('copying the root filesystem', 'cp', ['-a', rootfs, tree], log);
  const npmDir = join(tree, 'usr', 'local', 'lib', 'node_modules', 'npm');
  mkdirSync(npmDir, { recursive: true });
  await sh(
    'installing node and npm',
    'sh',
    [
      '-c',
      [
        `install -m 0755 '${node.path}' '${tree}/usr/local/bin/node'`,
        `tar -xzf '${npmTgz}' -C '${npmDir}' --strip-components=1 --no-same-owner`,
        `ln -s ../lib/node_modules/npm/bin/npm-cli.js '${tree}/usr/local/bin/npm'`,
        `ln -s ../lib/node_modules/npm/bin/npx-cli.js '${tree}/usr/local/bin/npx'`,
        `chroot '${tree}' groupadd --gid 1000 node`,
        `chroot '${tree}' useradd --uid 1000 --gid node --shell /bin/bash --create-home node`,
        `chroot '${tree}' node --version`,
        `chroot '${tree}' npm --version`,
      ].join(' && '),
    ],
    log,
  );
  const tar = join(cacheDir, 'node-rootfs.tar');
  await sh('packing the root filesystem', 'tar', ['--numeric-owner', '-C', tree, '-cf', tar, '.'], log);
  const changes = [
    `ENV NODE_VERSION=${node.version}`,
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'CMD ["node"]',
    `LABEL dev.shoal.made-here="debootstrap bookworm minbase + node ${node.version} + npm ${NPM_VERSION}"`,
  ].flatMap((c) => ['--change', c]);
  const first = fullName(missing[0]);
  await podmanOk(['import', ...changes, '--message', 'made by scripts/image.ts', tar, first], { timeoutMs: 10 * 60_000 });
  for (const ref of missing.slice(1)) await podmanOk(['tag', first, fullName(ref)]);
  rmSync(tar, { force: true });
  rmSync(tree, { recursive: true, force: true });
  log(`base images made in ${((Date.now() - started) / 1000).toFixed(0)} s: ${missing.map(fullName).join(', ')}`);
}

/** Volumes that give the build's npm the machine's npm `cafile`, when one is set. */
function npmTrustMounts(): string[] {
  let cafile = '';
  try {
    cafile = execFileSync('npm', ['config', 'get', 'cafile'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    /* no npm config: the build's npm uses Node's own CAs */
  }
  if (!cafile || cafile === 'null' || cafile === 'undefined' || !existsSync(cafile)) return [];
  const npmrc = join(cacheDir, 'build-npmrc');
  writeFileSync(npmrc, 'cafile=/run/shoal-build/ca.crt\n');
  // /usr/local/etc/npmrc is the global npm config of the official node images (npm's prefix is /usr/local).
  return ['--volume', `${cafile}:/run/shoal-build/ca.crt:ro`, '--volume', `${npmrc}:/usr/local/etc/npmrc:ro`];
}

export interface BuildResult {
  image: string;
  seconds: number;
  sizeBytes: number;
}

/** Builds IMAGE from the Dockerfile with podman (base images made first when missing). */
export async function buildImage(log: Log = stderrLog, echo = true): Promise<BuildResult> {
  const missing = podmanMissing();
  if (missing) throw new Error(`cannot build the image: ${missing}`);
  const started = Date.now();
  await ensureBaseImages(log);
  // The build's RUN steps fetch npm packages and Debian's tini: they use the host's network, and npm trusts
  // what the machine's npm trusts (a registry reached through a TLS-inspecting proxy signs with its own CA).
  // Mounted for the RUN steps only: nothing of the machine ends up in a layer.
  const r = await podman(
    ['build', '--pull=never', '--network=host', '--layers', ...npmTrustMounts(), '-t', IMAGE, '-f', join(root, 'Dockerfile'), root],
    { echo, timeoutMs: 60 * 60_000 },
  );
  ok(`podman build -t ${IMAGE}`, r);
  const seconds = (Date.now() - started) / 1000;
  const sizeBytes = Number((await podmanOk(['image', 'inspect', '--format', '{{.Size}}', IMAGE])).trim());
  return { image: IMAGE, seconds, sizeBytes };
}

export interface SizedEntry {
  path: string;
  bytes: number;
}

/** Bytes of files under PATH (not following symlinks; hard links counted once). */
function duBytes(path: string, seen: Set<string>): number {
  const st = lstatSync(path, { bigint: false });
  const key = `${st.dev}:${st.ino}`;
  if (seen.has(key)) return 0;
  seen.add(key);
  if (!st.isDirectory()) return st.isFile() ? st.size : 0;
  let total = 0;
  for (const name of readdirSync(path)) total += duBytes(join(path, name), seen);
  return total;
}

/**
 * The image's files by folder: every entry of each folder in DIRS (inside the image) with its size, largest
 * first. Reads the image through `podman image mount`, so nothing runs in it.
 */
export async function imageContents(image: string, dirs: string[]): Promise<Record<string, SizedEntry[]>> {
  const mount = (await podmanOk(['image', 'mount', image])).trim();
  try {
    const out: Record<string, SizedEntry[]> = {};
    for (const dir of dirs) {
      const abs = join(mount, dir);
      if (!existsSync(abs)) {
        out[dir] = [];
        continue;
      }
      out[dir] = readdirSync(abs)
        .map((name) => ({ path: join(dir, name), bytes: duBytes(join(abs, name), new Set()) }))
        .sort((a, b) => b.bytes - a.bytes);
    }
    return out;
  } finally {
    await podman(['image', 'unmount', image]);
  }
}

/** The folders whose entries `npm run image -- contents` lists. */
export const CONTENT_DIRS = [
  '/',
  '/usr',
  '/usr/lib',
  '/usr/local/bin',
  '/usr/local/lib/node_modules',
  '/app',
  '/app/node_modules',
  '/app/dist',
];

export function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

async function main(): Promise<void> {
  const cmd = process.argv[2] ?? 'build';
  if (cmd === 'build') {
    const r = await buildImage();
    const layers = await podmanOk(['history', '--format', '{{.Size}}\t{{.CreatedBy}}', r.image]);
    process.stdout.write(
      `\nlayers of ${r.image} (newest first):\n${layers
        .split('\n')
        .filter(Boolean)
        .map((l) => `  ${l.slice(0, 150)}`)
        .join('\n')}\n`,
    );
    process.stdout.write(`built ${r.image} in ${r.seconds.toFixed(1)} s; image size ${mb(r.sizeBytes)}\n`);
  } else if (cmd === 'base') {
    await ensureBaseImages();
  } else if (cmd === 'contents') {
    const image = process.argv[3] ?? IMAGE;
    const total = Number((await podmanOk(['image', 'inspect', '--format', '{{.Size}}', image])).trim());
    const listing = await imageContents(image, CONTENT_DIRS);
    process.stdout.write(`${image}: ${mb(total)}\n`);
    for (const [dir, entries] of Object.entries(listing)) {
      process.stdout.write(`${dir}\n`);
      for (const e of entries.slice(0, 12)) process.stdout.write(`  ${mb(e.bytes).padStart(9)}  ${e.path}\n`);
      if (entries.length > 12)
        process.stdout.write(`  ${mb(entries.slice(12).reduce((s, e) => s + e.bytes, 0)).padStart(9)}  (${entries.length - 12} more)\n`);
    }
  } else {
    throw new Error(`unknown command ${JSON.stringify(cmd)}: expected build, base or contents`);
  }
}

if (import.meta.filename === resolve(process.argv[1] ?? '')) {
  main().catch((err) => {
    process.stderr.write(`image: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
