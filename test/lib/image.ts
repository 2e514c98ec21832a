// The container image for a test file: built with podman from the Dockerfile (scripts/image.ts; a cache hit
// when nothing changed since `npm run image` or the last test), run with the project's podman settings.
//
//   const image = imageForFile(t, import.meta.filename);   // null: skipped, loudly, naming what is missing
//   if (image) t.test('...', async (t) => { const ref = await image.ready(); await podmanOk(['run', '--rm', ref]); });
//
// When podman (or runc, netavark, catatonit, debootstrap) is missing, the file's tests are skipped with one
// line on stderr and a plan skip naming what is missing, and the line is appended to the file named by
// SHOAL_IMAGE_SKIPPED when that is set, so CI can fail on skipped image tests.
import { appendFileSync, closeSync, mkdirSync, openSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { buildImage, cacheDir, podman, podmanMissing, root, type BuildResult } from '../../scripts/image.ts';

export { podman, podmanOk, IMAGE } from '../../scripts/image.ts';

/** A build at a time on the machine: two test files asking at once would both build every layer. */
async function withBuildLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(cacheDir, { recursive: true });
  const lock = join(cacheDir, 'build.lock');
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch {
      // A lock older than an hour belongs to a build that was killed.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 3_600_000) rmSync(lock, { force: true });
      } catch {
        /* gone meanwhile */
      }
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

export interface ImageForFile {
  /** The image's reference, built (or found in the build cache) by the first call. */
  ready(): Promise<string>;
  /** How the build went (time includes a cache check), after ready(). */
  build: BuildResult | null;
}

/**
 * The image for the test file FILE (pass import.meta.filename), whose root test is T; or null when podman
 * is missing, after planning the file as skipped with the reason (stderr too).
 */
export function imageForFile(t: Test, file: string): ImageForFile | null {
  const name = relative(root, file);
  const why = podmanMissing();
  if (why) {
    const line = `image tests of ${name} skipped: ${why}`;
    process.stderr.write(`\n*** ${line} ***\n\n`);
    if (process.env.SHOAL_IMAGE_SKIPPED) appendFileSync(process.env.SHOAL_IMAGE_SKIPPED, `${line}\n`);
    t.plan(0, line);
    return null;
  }
  let built: Promise<string> | null = null;
  const out: ImageForFile = {
    build: null,
    ready() {
      built ??= withBuildLock(async () => {
        const r = await buildImage(() => {}, false);
        out.build = r;
        return r.image;
      });
      return built;
    },
  };
  return out;
}

/** Removes pods, containers, networks and volumes whose names start with PREFIX (a test's own, also after a crash). */
export async function removeByPrefix(prefix: string): Promise<void> {
  const containers = (await podman(['ps', '-a', '--format', '{{.Names}}'])).stdout.split('\n').filter((n) => n.startsWith(prefix));
  if (containers.length > 0) await podman(['rm', '-f', '-v', '-t', '0', ...containers]);
  const pods = (await podman(['pod', 'ps', '--format', '{{.Name}}'])).stdout.split('\n').filter((n) => n.startsWith(prefix));
  if (pods.length > 0) await podman(['pod', 'rm', '-f', '-t', '0', ...pods]);
  const networks = (await podman(['network', 'ls', '--format', '{{.Name}}'])).stdout.split('\n').filter((n) => n.startsWith(prefix));
  if (networks.length > 0) await podman(['network', 'rm', '-f', ...networks]);
  const volumes = (await podman(['volume', 'ls', '--format', '{{.Name}}'])).stdout.split('\n').filter((n) => n.startsWith(prefix));
  if (volumes.length > 0) await podman(['volume', 'rm', '-f', ...volumes]);
  // The image's VOLUME gives every container an anonymous volume, and kube play an emptyDir a named one: the
  // ones no container uses any more go (the storage is the tests' own).
  await podman(['volume', 'prune', '-f']);
}
