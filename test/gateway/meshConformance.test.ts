// The Gateway API mesh conformance cases (GAMMA: HTTPRoute/GRPCRoute whose parentRefs name a
// Service) of the pinned release, run against shoal: the cases as transcribed in
// conformance/cases.ts, one control plane and one mesh for all (lib/harness.ts), the cases in
// sequence, each case's manifests applied from the module and deleted after it. Prints
//   gateway-api mesh conformance: N passed, N failed, N not applicable of 22
// with every case's name and verdict at the end. A case passes as the official runner passes it:
// every request converges (3 consecutive answers compareRequest accepts, within 30 s), and for the
// weight cases one of up to 10 batches of 500 requests lands within 5 points of each weight.
//   SHOAL_GATEWAY_CASES=MeshPorts,MeshBasic npx tap test/gateway/meshConformance.test.ts   only these (the others: not run)
//
// What the harness does differently from the official runner (the cases are as they are):
//   - no kubelet: the Deployments' Pods are bound and given a kubelet's status by the harness, and run
//     as echo-basic (the module's own echo server) in network namespaces, since the EndpointSlice
//     controller refuses loopback pod addresses (lib/harness.ts);
//   - no `kubectl exec ... client`: lib/meshClient.ts sends the requests beside the caller's sidecar, in
//     a network namespace of its own (echo-basic holds 8080 and 7070 on the wildcard address, the ports
//     the cases call; see lib/harness.ts), and maps echo-basic's JSON onto compareRequest's fields;
//   - the steps of a case run side by side (the official runner runs most as parallel subtests), so a
//     case whose feature is missing costs one 30 s window;
//   - before its manifests, each case is sent to the base mesh once (a control: at least one step must
//     fail there, or the split must miss the weights), and after it the harness waits until the callers'
//     snapshots are the base mesh's again before the next case;
//   - what the case states but the mesh runner does not check (the path the backend saw, a redirect's
//     Location) is reported in comments, without changing the verdict.
import t, { type Test } from 'tap';
import { kubeForFile } from '../lib/kube.ts';
import { cleanLeftovers, destroyAllSync, NetnsCluster, netnsUnavailable } from '../e2e/lib/netns.ts';
import { CASES, NOT_APPLICABLE, testCaseName, type ConformanceCase, type Step } from './conformance/cases.ts';
import {
  awaitConvergence,
  beyondOfficialChecks,
  compareRequest,
  planRequest,
  weightedDistribution,
  WEIGHT_MAX_TEST_RETRIES,
  WEIGHT_TOTAL_REQUESTS,
  type Convergence,
} from './conformance/compare.ts';
import { MeshHarness, sidecarDown } from './lib/harness.ts';
import type { ClientRequest } from './lib/meshClient.ts';

type Verdict = 'pass' | 'fail' | 'n/a' | 'not run';
interface CaseResult {
  c: ConformanceCase;
  verdict: Verdict;
  why: string;
}

const kube = kubeForFile(t, import.meta.filename);
const only = process.env.SHOAL_GATEWAY_CASES
  ? new Set(
      process.env.SHOAL_GATEWAY_CASES.split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    )
  : null;
for (const name of only ?? []) {
  if (!CASES.some((c) => c.ShortName === name))
    throw new Error(`SHOAL_GATEWAY_CASES names ${name}, which is no case (${CASES.map((c) => c.ShortName).join(', ')})`);
}

function summary(results: CaseResult[]): string {
  const n = (v: Verdict) => results.filter((r) => r.verdict === v).length;
  const notRun = n('not run') > 0 ? `, ${n('not run')} not run` : '';
  const lines = [
    `gateway-api mesh conformance: ${n('pass')} passed, ${n('fail')} failed, ${n('n/a')} not applicable${notRun} of ${CASES.length}`,
  ];
  for (const r of results) {
    const tag = { pass: 'PASS', fail: 'FAIL', 'n/a': 'N/A ', 'not run': 'SKIP' }[r.verdict];
    lines.push(`  ${tag} ${r.c.ShortName} (tests/mesh/${r.c.goFile})${r.why ? `: ${r.why}` : ''}`);
  }
  return lines.join('\n');
}

function opFor(h: MeshHarness, step: Step): { op: ClientRequest; plan: ReturnType<typeof planRequest> } {
  const plan = planRequest(step.exp, h.podIps());
  const op: ClientRequest =
    plan.protocol === 'grpc'
      ? { op: 'grpc', host: plan.host, port: plan.port, authority: plan.hostHeader, proto: h.grpcProto }
      : {
          op: 'http',
          host: plan.host,
          port: plan.port,
          hostHeader: plan.hostHeader,
          path: plan.path,
          method: plan.method,
          headers: plan.headers,
        };
  return { op, plan };
}

/** MakeRequestAndExpectEventuallyConsistentResponse for one step. */
async function converge(h: MeshHarness, step: Step): Promise<Convergence> {
  const { op, plan } = opFor(h, step);
  return awaitConvergence(async () => {
    const [r] = await h.send(step.caller, op);
    return { error: compareRequest(step.exp, r), result: r, notes: beyondOfficialChecks(step.exp, plan, r) };
  });
}

/** The weight check: up to 10 batches of 500 requests (10 at a time); passes when one batch is within tolerance. */
async function weights(h: MeshHarness, step: Step, expected: Record<string, number>): Promise<{ ok: boolean; tries: string[] }> {
  const { op } = opFor(h, step);
  const tries: string[] = [];
  for (let i = 0; i < WEIGHT_MAX_TEST_RETRIES; i++) {
    const results = await h.send(step.caller, { ...op, count: WEIGHT_TOTAL_REQUESTS, concurrency: 10, brief: true } as ClientRequest);
    const counts: Record<string, number> = {};
    for (const r of results)
      counts[r.hostname || `(no pod: ${r.code ?? r.error})`] = (counts[r.hostname || `(no pod: ${r.code ?? r.error})`] ?? 0) + 1;
    const err = weightedDistribution(
      results.map((r) => r.hostname),
      expected,
    );
    tries.push(`batch ${i + 1}: ${JSON.stringify(counts)}${err ? ` -> ${err.replace(/\n/g, '; ')}` : ' -> within tolerance'}`);
    if (err === null) return { ok: true, tries };
  }
  return { ok: false, tries };
}

/**
 * A control, before the case's manifests: each step sent to the base mesh. A case with manifests
 * must have a step the base mesh fails (else passing it would prove nothing about its routes); the steps
 * the base mesh already satisfies are named (MeshFrontend's pod-IP step, MeshPorts' excluded port...).
 */
async function control(t: Test, h: MeshHarness, c: ConformanceCase): Promise<boolean> {
  if (c.Manifests.length === 0) return true;
  if (c.kind === 'weights') {
    // Its request converges on the base mesh too; what the route changes is the split: one batch must miss the weights.
    // (Two batches at most: the base mesh's even split lands within 5 points of 70/30 only by a rare chance.)
    const { op } = opFor(h, c.steps[0]);
    let err: string | null = null;
    for (let i = 0; i < 2 && err === null; i++) {
      const results = await h.send(c.steps[0].caller, {
        ...op,
        count: WEIGHT_TOTAL_REQUESTS,
        concurrency: 10,
        brief: true,
      } as ClientRequest);
      err = weightedDistribution(
        results.map((r) => r.hostname),
        c.weights!,
      );
    }
    return t.ok(
      err !== null,
      `control: a batch of ${WEIGHT_TOTAL_REQUESTS} on the base mesh (no route of the case) misses the weights: ${err?.replace(/\n/g, '; ') ?? 'two did not'}`,
    );
  }
  const already: string[] = [];
  for (const [i, step] of c.steps.entries()) {
    // Six tries: a step that wants one backend of a Service the base mesh balances over two passes one by chance.
    const { op } = opFor(h, step);
    const rs = await h.send(step.caller, { ...op, count: 6 } as ClientRequest);
    if (rs.every((r) => compareRequest(step.exp, r) === null)) already.push(testCaseName(step.exp, i));
  }
  if (already.length > 0)
    t.comment(`${c.ShortName}: without the case's manifests the base mesh already answers as expected to: ${already.join('; ')}`);
  return t.ok(
    already.length < c.steps.length,
    `control: the base mesh (no route of the case) fails ${c.steps.length - already.length} of the ${c.steps.length} step(s)`,
  );
}

async function runCase(t: Test, h: MeshHarness, c: ConformanceCase): Promise<string> {
  const failures: string[] = [];
  if (!(await control(t, h, c))) failures.push('harness control: the base mesh already answers as the case expects');
  await h.apply(c.Manifests);
  try {
    // The steps of a case run side by side (the official runner runs most of them as parallel subtests):
    // a case whose feature is missing costs one convergence window, not one per step.
    const outcomes = await Promise.all(c.steps.map(async (step, i) => ({ step, i, conv: await converge(h, step) })));
    for (const { step, i, conv } of outcomes) {
      const name = `${testCaseName(step.exp, i)}${step.caller === 'consumer' ? ' (from the consumer namespace)' : ''}`;
      const detail = conv.ok
        ? `converged after ${conv.attempts} attempts in ${conv.ms} ms`
        : `not converged after ${conv.attempts} attempts in ${conv.ms} ms: ${conv.last}`;
      t.ok(conv.ok, `${name}: ${detail}`, conv.ok ? {} : { last: conv.lastResult });
      if (conv.notes.length > 0) t.comment(`${c.ShortName} / ${name}: beyond the official checks: ${conv.notes.join('; ')}`);
      if (!conv.ok) failures.push(`${name}: ${conv.last}`);
    }
    if (c.kind === 'weights' && failures.length === 0) {
      const w = await weights(h, c.steps[0], c.weights!);
      for (const line of w.tries) t.comment(`${c.ShortName}: ${line}`);
      t.ok(
        w.ok,
        `the answers follow the weights ${JSON.stringify(c.weights)} within 5 points (${w.tries.length} batch(es) of ${WEIGHT_TOTAL_REQUESTS})`,
      );
      if (!w.ok) failures.push(`weights: ${w.tries[w.tries.length - 1]}`);
    }
  } finally {
    const down = sidecarDown(h);
    if (down) failures.push(down);
    const note = await h.clean(c.Manifests);
    if (note) t.comment(`${c.ShortName}: cleanup did not return to the base mesh: ${note}`);
  }
  return failures.join(' | ');
}

if (kube) {
  const why = netnsUnavailable();
  if (why !== null) {
    if (process.env.CI === 'true') t.fail(`the mesh conformance cases cannot run: ${why} (they need root and ip netns)`);
    else t.test('gateway-api mesh conformance', { skip: `not run: ${why} (it needs root and ip netns)` }, () => {});
  } else {
    // Setup (a minute on a busy machine) and, at worst, every case failing after its 30 s window.
    t.setTimeout(CASES.length * 45_000 + 240_000);
    t.on('timeout', destroyAllSync);
    t.test('gateway-api mesh conformance', async (t) => {
      const removed = cleanLeftovers();
      if (removed.length > 0) t.comment(`removed leftovers of dead runs: ${removed.join(', ')}`);
      const results: CaseResult[] = [];
      const started = Date.now();
      const k = await kube.up();
      const cluster = new NetnsCluster('gw');
      let h: MeshHarness;
      try {
        h = await MeshHarness.start(t, k, cluster, (m) => t.comment(m));
      } catch (err) {
        const logs = cluster.logs();
        await cluster.destroy({ keepDir: true });
        for (const c of CASES) {
          if (only && !only.has(c.ShortName)) results.push({ c, verdict: 'not run', why: 'not in SHOAL_GATEWAY_CASES' });
          else
            results.push({
              c,
              verdict: NOT_APPLICABLE[c.ShortName] ? 'n/a' : 'fail',
              why: NOT_APPLICABLE[c.ShortName] ?? 'the harness did not start',
            });
        }
        const text = summary(results);
        t.comment(text);
        console.error(`\n${text}\n`);
        throw new Error(
          `the mesh for the conformance cases did not start: ${(err as Error).message}\n${logs}\nlogs kept in ${cluster.dir}`,
          { cause: err },
        );
      }
      t.teardown(async () => {
        const failed = t.counts.fail > 0;
        if (failed) t.comment(`process logs (last lines):\n${h.cluster.logs()}\nlogs kept in ${h.cluster.dir}`);
        await h.destroy({ keepDir: failed });
      });
      t.comment(`mesh up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      for (const c of CASES) {
        const na = NOT_APPLICABLE[c.ShortName];
        if (only && !only.has(c.ShortName)) {
          results.push({ c, verdict: 'not run', why: 'not in SHOAL_GATEWAY_CASES' });
          continue;
        }
        if (na) {
          results.push({ c, verdict: 'n/a', why: na });
          t.test(`${c.ShortName} (tests/mesh/${c.goFile})`, { skip: `not applicable to shoal: ${na}` }, () => {});
          continue;
        }
        const caseStarted = Date.now();
        let why = '';
        await t.test(`${c.ShortName} (tests/mesh/${c.goFile}): ${c.Description}`, async (t) => {
          try {
            why = await runCase(t, h, c);
          } catch (err) {
            why = `harness error: ${(err as Error).message}`;
            throw err;
          }
        });
        results.push({ c, verdict: why === '' ? 'pass' : 'fail', why: why.length > 300 ? `${why.slice(0, 300)}...` : why });
        t.comment(`${c.ShortName}: ${why === '' ? 'passed' : 'failed'} in ${((Date.now() - caseStarted) / 1000).toFixed(1)} s`);
      }
      const text = summary(results);
      t.comment(text);
      console.error(`\n${text}\n(${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
    });
  }
}
