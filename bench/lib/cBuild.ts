// The benchmarks' C clients (bench/lib/*.c): built with cc into bench/.build/ when missing or older
// than their source. A client in C measures the server, not a JavaScript client's event loop.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './httpPeers.ts';
import { ensureTools } from './tools.ts';

export function cBinary(name: string): string {
  return join(root, 'bench', '.build', name);
}

/** Builds bench/lib/NAME.c; the binary's path, or why it could not be built (no cc, a compile error). */
export function buildC(name: string, log: (m: string) => void): { path: string } | { error: string } {
  const source = join(root, 'bench', 'lib', `${name}.c`);
  const binary = cBinary(name);
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs) return { path: binary };
  const tools = ensureTools(['cc'], log);
  if (tools.missing.length) return { error: `no C compiler (${tools.actions.join('; ')})` };
  mkdirSync(join(root, 'bench', '.build'), { recursive: true });
  try {
    execFileSync('cc', ['-O2', '-Wall', '-o', binary, source], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    return { error: `cc ${source} failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}` };
  }
  return { path: binary };
}
