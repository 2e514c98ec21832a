// gatewayAPI.installCRDs under real Helm (helm.sh/helm/v4 built from kube/helm/go.mod): off renders no CRD;
// on renders every CRD of the pinned release's experimental channel, identical to the module's files but
// for Helm's keep annotation and the chart's labels, from a chart copy filled by charts/gatewayCrds.ts and
// from the chart `helm package` makes of it; a chart without them refuses the value with a message saying
// what to do; git ignores the folder the CRDs are copied to. Then the package is installed into a real API
// server that has no Gateway API yet (test/lib/kube.ts with gatewayApi: false): the CRDs are Established, an
// HTTPRoute is accepted, and `helm uninstall` leaves the CRDs (and the route) in place.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { ensureHelm, root } from '../../scripts/kube.ts';
import { crdFiles } from '../../scripts/gateway.ts';
import { chartDir, copyGatewayCrds, CRD_FOLDER } from '../../charts/gatewayCrds.ts';
import { kubeForFile, run } from '../lib/kube.ts';

t.setTimeout(300_000);
// null (the file skipped, loudly) without Go, openssl or kubectl: Helm and the CRDs come from Go modules too.
const kube = kubeForFile(t, import.meta.filename, { gatewayApi: false });
if (kube) {
  const work = mkdtempSync(join(tmpdir(), 'shoal-gateway-crds-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const helmHome = join(work, 'helm-home');
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
  };
  // The cluster DNS is given, so nothing is looked up: no cluster needed.
  const base = ['--namespace', 'shoal', '--set', 'injector.dnsUpstream=10.96.0.10'];

  async function helm(args: string[]) {
    return run(await ensureHelm(), args, { env, timeoutMs: 120_000 });
  }

  async function template(chart: string, installCRDs: boolean): Promise<any[]> {
    const r = await helm(['template', 'shoal', chart, ...base, '--set', `gatewayAPI.installCRDs=${installCRDs}`]);
    if (r.code !== 0) throw new Error(`helm template (installCRDs=${installCRDs}): exit ${r.code}\n${r.stderr}`);
    return parseAllDocuments(r.stdout)
      .map((d) => d.toJS())
      .filter((o) => o !== null && o !== undefined);
  }

  const crds = (objs: any[]) => objs.filter((o) => o.kind === 'CustomResourceDefinition');

  /** The CRDs as the pinned module has them, by name. */
  const wanted = new Map<string, any>(
    crdFiles('experimental').map((f) => {
      const o = parseYaml(readFileSync(f, 'utf8'));
      return [o.metadata.name, o];
    }),
  );

  /** Every rendered CRD equals the module's, but for the keep annotation and the chart's labels. */
  function checkCrds(t: Test, rendered: any[], what: string): void {
    t.same(
      rendered.map((c) => c.metadata.name).sort(),
      [...wanted.keys()].sort(),
      `${what}: every CRD of the experimental channel (${wanted.size})`,
    );
    for (const c of rendered) {
      const w = wanted.get(c.metadata.name);
      const { annotations, labels, ...md } = c.metadata;
      const { annotations: wAnnotations, labels: wLabels, ...wMd } = w.metadata;
      t.same({ ...c, metadata: md }, { ...w, metadata: wMd }, `${what}: ${c.metadata.name} is the module's (spec and all)`);
      t.same(
        annotations,
        { ...wAnnotations, 'helm.sh/resource-policy': 'keep' },
        `${what}: ${c.metadata.name} keeps the release's annotations and is kept on uninstall`,
      );
      t.equal(labels?.['app.kubernetes.io/instance'], 'shoal', `${what}: ${c.metadata.name} carries the release's labels`);
      if (wLabels) t.match(labels, wLabels, `${what}: and its own`);
    }
  }

  t.test('git ignores the folder the CRDs are copied to; the checkout holds no CRD', async (t) => {
    const ignored = execFileSync('git', ['check-ignore', '-v', `charts/shoal/${CRD_FOLDER}/gateway.networking.k8s.io_httproutes.yaml`], {
      cwd: root,
      encoding: 'utf8',
    });
    t.match(ignored, /charts\/\.gitignore/, `ignored by charts/.gitignore: ${ignored.trim()}`);
    const tracked = execFileSync('git', ['ls-files', 'charts'], { cwd: root, encoding: 'utf8' }).split('\n');
    t.same(
      tracked.filter((f) => f.includes(CRD_FOLDER) || /customresourcedefinition|gateway\.networking\.k8s\.io_/i.test(f)),
      [],
      'no CRD file is committed under charts/',
    );
  });

  t.test('a chart without the CRDs: off renders as before; on fails saying how to get them', async (t) => {
    const bare = join(work, 'bare');
    cpSync(chartDir, bare, { recursive: true, filter: (src) => !src.includes(CRD_FOLDER) });
    t.same(crds(await template(bare, false)), [], 'off: no CRD');
    const r = await helm(['template', 'shoal', bare, ...base, '--set', 'gatewayAPI.installCRDs=true']);
    t.not(r.code, 0, 'on: helm template fails');
    t.match(
      r.stderr,
      /gatewayAPI\.installCRDs is true, but this chart has no Gateway API CRDs.*node charts\/gatewayCrds\.ts/,
      'naming the value and what to run',
    );
    const bad = await helm(['template', 'shoal', bare, ...base, '--set', 'gatewayAPI.installCRDs=yes']);
    t.not(bad.code, 0, 'a value that is no boolean is refused by values.schema.json');
  });

  t.test(
    'filled by charts/gatewayCrds.ts, then packaged by helm: off renders no CRD, on renders every one as the module has it',
    async (t) => {
      const chart = join(work, 'shoal');
      cpSync(chartDir, chart, { recursive: true, filter: (src) => !src.includes(CRD_FOLDER) });
      const copied = copyGatewayCrds(chart);
      t.equal(copied.length, wanted.size, `copied ${copied.length} CRD files`);

      const off = await template(chart, false);
      t.same(crds(off), [], 'off (the default): no CRD');
      t.ok(
        off.some((o) => o.kind === 'Deployment'),
        'and the rest of the chart as always',
      );
      const defaults = await helm(['template', 'shoal', chart, ...base]);
      t.notMatch(defaults.stdout, /CustomResourceDefinition/, 'the default values render no CRD');
      checkCrds(t, crds(await template(chart, true)), 'on');

      const out = join(work, 'packaged');
      const p = await helm(['package', chart, '-d', out]);
      t.equal(p.code, 0, `helm package: ${p.stderr.trim() || p.stdout.trim()}`);
      const tgz = readdirSync(out).find((f) => f.endsWith('.tgz'));
      t.ok(tgz, `a package: ${tgz}`);
      const listing = execFileSync('tar', ['tzf', join(out, tgz!)], { encoding: 'utf8' }).split('\n');
      t.equal(
        listing.filter((f) => f.startsWith(`shoal/${CRD_FOLDER}/`) && f.endsWith('.yaml')).length,
        wanted.size,
        'the package carries the CRD files',
      );
      t.same(crds(await template(join(out, tgz!), false)), [], 'packaged, off: no CRD');
      checkCrds(t, crds(await template(join(out, tgz!), true)), 'packaged, on');
    },
  );

  t.test(
    'the package installed with installCRDs into an API server without the Gateway API: CRDs Established, routes accepted, kept on uninstall',
    async (t) => {
      const k = await kube.up();
      const out = join(work, 'packaged');
      const tgz = join(
        out,
        readdirSync(out).find((f) => f.endsWith('.tgz'))!,
      );
      t.equal((await k.kubectl(['get', 'crd', 'httproutes.gateway.networking.k8s.io'])).code, 1, 'no HTTPRoute CRD before the install');
      await k.helmOk(
        [
          'install',
          'shoal',
          tgz,
          '--namespace',
          'shoal',
          '--create-namespace',
          '--set',
          'injector.dnsUpstream=10.96.0.10',
          '--set',
          'gatewayAPI.installCRDs=true',
          '--wait=false',
        ],
        { timeoutMs: 180_000 },
      );
      for (const name of wanted.keys())
        await k.kubectlOk(['wait', '--for=condition=Established', '--timeout=60s', `crd/${name}`], { timeoutMs: 90_000 });
      t.pass(`every CRD the chart installed is Established (${wanted.size})`);
      const route = {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'to-v2', namespace: 'default' },
        spec: {
          parentRefs: [{ group: '', kind: 'Service', name: 'api', port: 8080 }],
          rules: [{ backendRefs: [{ name: 'api-v2', port: 8080 }] }],
        },
      };
      // Listable a moment after Established (the watch cache fills): retry the create briefly.
      let created = await k.kubectl(['create', '-f', '-'], { input: JSON.stringify(route) });
      for (let i = 0; created.code !== 0 && i < 50; i++) {
        await new Promise((r) => setTimeout(r, 200));
        created = await k.kubectl(['create', '-f', '-'], { input: JSON.stringify(route) });
      }
      t.equal(created.code, 0, `an HTTPRoute is accepted by the installed CRD ${created.stderr.trim()}`);
      await k.helmOk(['uninstall', 'shoal', '--namespace', 'shoal'], { timeoutMs: 120_000 });
      const left = (await k.getJson(['crd'])).items.map((c: any) => c.metadata.name).sort();
      t.same(left, [...wanted.keys()].sort(), 'helm uninstall keeps every CRD (helm.sh/resource-policy: keep)');
      t.equal((await k.getJson(['httproute', 'to-v2', '-n', 'default'])).metadata.name, 'to-v2', 'and so the routes');
    },
  );
}
