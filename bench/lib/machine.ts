// Names the machine a run happened on: every report carries it.
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, release } from 'node:os';
import { toolVersion } from './tools.ts';

export interface Machine {
  cores: number;
  cpuModel: string;
  node: string;
  kernel: string;
  memoryGb: number;
  loadAverageAtStart: number[];
  tools: Record<string, string>;
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

export function machineInfo(): Machine {
  return {
    cores: cpus().length,
    cpuModel: cpuModel(),
    node: process.version,
    kernel: release(),
    memoryGb: Math.round(totalmem() / 2 ** 30),
    loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
    tools: Object.fromEntries(
      ['wrk', 'nginx-light', 'haproxy', 'dnsmasq-base', 'dnsperf', 'iperf3'].map((p) => [
        p,
        toolVersion('dpkg-query', ['-W', '-f', '${Version}', p]),
      ]),
    ),
  };
}
