// Finds the outside tools the benchmarks drive and installs missing Debian ones with apt-get when
// running as root; says what it did, so a report can name it.
import { execFileSync } from 'node:child_process';

/** Command → the Debian package that ships it. */
export const DEBIAN_PACKAGES: Record<string, string> = {
  wrk: 'wrk',
  haproxy: 'haproxy',
  nginx: 'nginx-light',
  dnsmasq: 'dnsmasq-base',
  dnsperf: 'dnsperf',
  iperf3: 'iperf3',
  dig: 'bind9-dnsutils',
  taskset: 'util-linux',
  cc: 'gcc',
};

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface ToolReport {
  found: string[];
  installed: string[];
  missing: string[];
  actions: string[];
}

export function ensureTools(cmds: string[], log: (msg: string) => void): ToolReport {
  const report: ToolReport = { found: [], installed: [], missing: [], actions: [] };
  const absent = cmds.filter((c) => {
    if (hasCommand(c)) {
      report.found.push(c);
      return false;
    }
    return true;
  });
  if (absent.length === 0) return report;
  const packages = [...new Set(absent.map((c) => DEBIAN_PACKAGES[c] ?? c))];
  if (process.getuid?.() !== 0 || !hasCommand('apt-get')) {
    report.missing.push(...absent);
    report.actions.push(`missing ${absent.join(', ')}; not root (or no apt-get), so not installed: apt-get install ${packages.join(' ')}`);
    log(report.actions[report.actions.length - 1]);
    return report;
  }
  const cmd = `apt-get install -y -qq --no-install-recommends ${packages.join(' ')}`;
  log(`installing ${packages.join(' ')} (${cmd})`);
  try {
    execFileSync('apt-get', ['update', '-qq'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    report.actions.push(`ran apt-get update and ${cmd}`);
  } catch (err) {
    report.actions.push(`${cmd} failed: ${(err as Error).message.split('\n')[0]}`);
  }
  for (const c of absent) (hasCommand(c) ? report.installed : report.missing).push(c);
  return report;
}

/** The first line of a tool's version output, for the report. */
export function toolVersion(cmd: string, args: string[]): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.split('\n')[0].trim();
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    return (e.stderr || e.stdout || '').split('\n')[0].trim() || 'unknown';
  }
}
