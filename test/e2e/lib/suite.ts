// What every e2e file does around its scenarios: refuse loudly when it cannot run (a failure
// with CI=true), clean what dead runs left behind, build the mesh, tear it down even when a
// scenario fails, and assert that nothing of the run is left behind.
import t, { type Test } from 'tap';
import { cleanLeftovers, destroyAllSync, netnsUnavailable } from './netns.ts';
import { CLI_CHOICE, Mesh, type MeshOptions } from './mesh.ts';

const DEADLINE_MS = 250_000;
const fileStarted = Date.now();

export function e2eSuite(title: string, opts: MeshOptions, scenarios: (t: Test, mesh: Mesh) => Promise<void>): void {
  const why = netnsUnavailable();
  if (why !== null) {
    if (process.env.CI === 'true') {
      t.fail(`end-to-end suite "${title}" cannot run: ${why} (it needs root, ip netns, curl, dnsmasq)`);
    } else {
      const notice = `END-TO-END SUITE NOT RUN: "${title}": ${why}. It needs root and ip netns; with CI=true this is a failure.`;
      console.error(`\n${'!'.repeat(notice.length)}\n${notice}\n${'!'.repeat(notice.length)}\n`);
      t.test(title, { skip: `not run: ${why}` }, () => {});
    }
    return;
  }
  // A ceiling for the whole file on a loaded machine (tap's default is 120 s); normally far less.
  // Our own deadline comes first: tearing the cluster down makes every pending step fail at
  // once, so the file ends with its failures reported and its leftovers checked, rather than
  // being killed by tap's timeout with namespaces still up.
  t.setTimeout(DEADLINE_MS + 30_000);
  t.on('timeout', destroyAllSync);
  t.test(title, async (t) => {
    const removed = cleanLeftovers();
    if (removed.length > 0) t.comment(`removed leftovers of dead runs: ${removed.join(', ')}`);
    const started = Date.now();
    const mesh = await Mesh.start(opts);
    let destroyed = false;
    // A failed run keeps its folder (process logs, topology, state files) for a look; the next
    // run's cleanLeftovers() removes it.
    const destroy = async () => {
      if (destroyed) return;
      destroyed = true;
      const failed = t.counts.fail > 0;
      await mesh.destroy({ keepDir: failed });
      if (failed) t.comment(`logs kept in ${mesh.dir}`);
    };
    t.teardown(destroy);
    t.comment(
      `cluster ${mesh.cluster.prefix} (subnet ${mesh.cluster.subnet}.0/24) up in ${Date.now() - started} ms; shoal run from ${CLI_CHOICE.path} (${CLI_CHOICE.why})`,
    );
    const deadline = setTimeout(
      () => {
        t.fail(`deadline: the file ran ${DEADLINE_MS / 1000} s; tearing the cluster down`);
        destroyAllSync();
      },
      DEADLINE_MS - (Date.now() - fileStarted),
    );
    try {
      await scenarios(t, mesh);
    } finally {
      clearTimeout(deadline);
      if (t.counts.fail > 0) t.comment(`process logs (last lines):\n${mesh.cluster.logs()}`);
      await destroy();
      const left = mesh.cluster.leftovers();
      t.same(left, [], `nothing of ${mesh.cluster.prefix} is left: no namespace, link, /etc/netns folder or process`);
    }
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
