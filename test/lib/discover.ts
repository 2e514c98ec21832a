// Starts discover on loopback, port 0, from a topology written to a temp folder.
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { createLogger } from '../../shared/log.ts';
import { startDiscover, type Discover } from '../../discover/main.ts';

export interface TestDiscover extends Discover {
  file: string;
  /** Replaces the topology file atomically, as an editor or a ConfigMap mount would. */
  edit(text: string): void;
}

export async function withDiscover(
  t: Test,
  topology: string,
  opts: { writeToken?: string; fanOutThreads?: number } = {},
): Promise<TestDiscover> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-test-'));
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, topology);
  const d = await startDiscover({
    staticFile: file,
    host: '127.0.0.1',
    port: 0,
    writeToken: opts.writeToken,
    fanOutThreads: opts.fanOutThreads,
    log: createLogger('discover', 'silent'),
  });
  t.teardown(async () => {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });
  let n = 0;
  return Object.assign(d, {
    file,
    edit(text: string) {
      const tmp = join(dir, `.edit-${n++}`);
      writeFileSync(tmp, text);
      renameSync(tmp, file);
    },
  });
}

export const TWO_APPS = `
services:
  - name: api
    ports: [{ port: 8080, protocol: http }]
    endpoints: [10.0.0.1:8080, 10.0.0.2:8080, 10.0.0.3:8080]
  - name: cache
    ports: [{ port: 6379 }]
    endpoints: [10.0.1.1:6379, 10.0.1.2:6379]
  - name: db
    ports: [{ port: 5432 }]
    endpoints: [10.0.2.1:5432]
apps:
  - name: web
    config:
      base_ports: [{ port: 8000, protocol: http }]
      base_services:
        - { depend_service_alias: api, port: 8080, protocol: http }
        - { depend_service_alias: cache, port: 6379, protocol: tcp }
  - name: worker
    config:
      base_services:
        - { depend_service_alias: db, port: 5432, protocol: tcp }
`;
