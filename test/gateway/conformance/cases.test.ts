// The transcription against the module it comes from (the cases of tests/mesh at the pinned release:
// names, files, features, manifests, number of requests), and the port of the official runner's checks
// (compare.ts) against what the Go code does with the same inputs.
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { goMissing } from '../../../scripts/kube.ts';
import { GATEWAY_CONFORMANCE, moduleDir } from '../../../scripts/gateway.ts';
import { CASES, NOT_APPLICABLE, testCaseName } from './cases.ts';
import { compareRequest, extractBackendName, planRequest, weightedDistribution } from './compare.ts';
import type { ClientResult } from '../lib/meshClient.ts';

interface GoCase {
  shortName: string;
  file: string;
  features: string[];
  manifests: string[];
  sharesTestOf?: string;
}

/** The suite.ConformanceTest literals of the Go files: ShortName, Features, Manifests, and a Test borrowed from another case. */
function goCases(dir: string): GoCase[] {
  const out: GoCase[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.go'))
    .sort()) {
    const text = readFileSync(join(dir, file), 'utf8');
    for (const block of text.split(/\nvar \w+ = suite\.ConformanceTest\{/).slice(1)) {
      const shortName = /ShortName:\s+"(\w+)"/.exec(block)?.[1];
      if (!shortName) continue;
      const features = [
        ...(/Features:\s+\[\]features\.FeatureName\{([^}]*)\}/.exec(block)?.[1] ?? '').matchAll(/features\.Support(\w+)/g),
      ].map((m) => m[1]);
      const manifests = [...(/Manifests:\s+\[\]string\{([^}]*)\}/.exec(block)?.[1] ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]);
      const borrowed = /Test:\s+(\w+)\.Test,/.exec(block)?.[1];
      out.push({ shortName, file, features, manifests, ...(borrowed ? { sharesTestOf: borrowed } : {}) });
    }
  }
  return out;
}

const why = goMissing();
if (why) {
  t.test('the transcription matches the module', { skip: why }, () => {});
} else {
  t.test('the transcription matches tests/mesh of the pinned conformance module', async (t) => {
    const root = moduleDir(GATEWAY_CONFORMANCE);
    const dir = join(root, 'tests', 'mesh');
    const go = goCases(dir);
    t.same(
      CASES.map((c) => c.ShortName).sort(),
      go.map((g) => g.shortName).sort(),
      `the ${go.length} ShortNames of tests/mesh/*.go, no more, no fewer`,
    );
    t.equal(CASES.length, 22, 'the release has 22 mesh cases (httproute-request-header-modifier.go holds two)');
    for (const c of CASES) {
      const g = go.find((x) => x.shortName === c.ShortName);
      if (!g) continue;
      t.equal(c.goFile, g.file, `${c.ShortName} comes from ${g.file}`);
      t.same([...c.Features].sort(), [...g.features].sort(), `${c.ShortName}: features`);
      t.same(c.Manifests, g.manifests, `${c.ShortName}: manifests`);
      for (const m of c.Manifests) t.ok(existsSync(join(root, m)), `${m} is in the module`);
      // Every request the Go file makes is a step (a file's requests are shared by the cases that borrow its Test).
      // (ExpectedRequest embeds a Request too: those are not requests made.)
      const goText = readFileSync(join(dir, g.file), 'utf8');
      const requests =
        (goText.match(/\bRequest:\s+http\.Request\{/g) ?? []).length -
        (goText.match(/ExpectedRequest\{\s*Request:\s+http\.Request\{/g) ?? []).length;
      t.equal(c.steps.length, requests, `${c.ShortName}: ${requests} request(s) in ${g.file}`);
    }
    t.ok(existsSync(join(root, 'mesh', 'manifests.yaml')), 'mesh/manifests.yaml is in the module');
    t.ok(existsSync(join(root, 'echo-basic', 'grpcecho.proto')), 'echo-basic/grpcecho.proto is in the module');
    for (const name of Object.keys(NOT_APPLICABLE))
      t.ok(
        CASES.some((c) => c.ShortName === name),
        `not-applicable entry ${name} names a case`,
      );
  });
}

const answer = (over: Partial<ClientResult>): ClientResult => ({
  code: 200,
  hostname: 'echo-v1-6d9c8-x7k2p',
  requestHeaders: {},
  responseHeaders: {},
  ...over,
});

t.test('compareRequest as utils/echo/pod.go', async (t) => {
  t.equal(compareRequest({ Request: {} }, answer({})), null, 'no expectation: 200 from any pod');
  t.match(compareRequest({ Request: {} }, answer({ code: 404 })), /wanted status code to be one of \[200\], got 404/);
  t.equal(
    compareRequest({ Request: {}, Response: { StatusCode: 303 } }, answer({ code: 303, hostname: '' })),
    null,
    'a redirect answered by the sidecar: no pod, no backend wanted',
  );
  t.match(compareRequest({ Request: {}, Backend: 'echo-v2' }, answer({})), /expected pod name to start with echo-v2, got echo-v1-/);
  t.match(compareRequest({ Request: {} }, answer({ code: null, error: 'ECONNREFUSED' })), /no answer: ECONNREFUSED/);
  // Request headers: names case-insensitive, several values joined with "," (http.Header values).
  const exp = {
    Request: {},
    ExpectedRequest: { Headers: { 'X-Header-Add': 'some-other-value,add-appends-values' }, AbsentHeaders: ['x-header-remove'] },
  };
  t.equal(
    compareRequest(exp, answer({ requestHeaders: { 'X-Header-Add': ['some-other-value', 'add-appends-values'] } })),
    null,
    'two values of one header',
  );
  t.match(
    compareRequest(exp, answer({ requestHeaders: { 'X-Header-Add': ['some-other-value, add-appends-values'] } })),
    /to be set to some-other-value,add-appends-values, got some-other-value, add-appends-values/,
    'one value with ", " is not two values',
  );
  t.match(
    compareRequest(
      exp,
      answer({ requestHeaders: { 'X-Header-Add': ['some-other-value', 'add-appends-values'], 'X-Header-Remove': ['v'] } }),
    ),
    /expected x-header-remove header to not be set/,
  );
  t.match(compareRequest(exp, answer({})), /no headers captured, expected 1/);
  // Response headers: Get (the first value), AbsentHeaders by any value.
  t.equal(
    compareRequest(
      { Request: {}, Response: { Headers: { 'X-Header-Set': 'set' } } },
      answer({ responseHeaders: { 'x-header-set': ['set'] } }),
    ),
    null,
  );
  t.match(
    compareRequest({ Request: {}, Response: { Headers: { 'X-Header-Set': 'set' } } }, answer({})),
    /expected header X-Header-Set=set, got $/,
  );
  t.match(
    compareRequest(
      { Request: {}, Response: { AbsentHeaders: ['X-Header-Set'] } },
      answer({ responseHeaders: { 'x-header-set': ['set'] } }),
    ),
    /expected no header "X-Header-Set"/,
  );
  // gRPC: status 0 maps to 200.
  t.equal(compareRequest({ Request: { Protocol: 'grpc' }, Response: { StatusCode: 200 } }, answer({})), null);
});

t.test('makeRequest and CalculateHost as utils/echo and utils/http', async (t) => {
  const p = planRequest({ Request: {} }, {});
  t.same([p.host, p.port, p.hostHeader, p.path, p.method], ['echo', 80, 'echo', '/', 'GET'], 'defaults: echo, port 80, GET /');
  const q = planRequest({ Request: { Host: 'echo-v1:8080', Path: '/x?y=1' } }, {});
  t.same([q.host, q.port, q.hostHeader, q.path], ['echo-v1', 8080, 'echo-v1:8080', '/x?y=1'], 'a port other than 80 stays in the Host');
  const g = planRequest({ Request: { Protocol: 'grpc', Host: 'echo:7070' } }, {});
  t.same([g.protocol, g.host, g.port, g.hostHeader, g.method], ['grpc', 'echo', 7070, 'echo:7070', ''], 'gRPC: no method');
  const ip = planRequest({ Request: { Host: 'POD_IP(echo-v2):8080' } }, { 'echo-v2': '10.1.2.3' });
  t.same([ip.host, ip.port, ip.hostHeader], ['10.1.2.3', 8080, '10.1.2.3:8080'], "ConnectToApp's pod address");
  t.throws(() => planRequest({ Request: { Host: 'POD_IP(echo-v9):8080' } }, {}), /no pod address for echo-v9/);
  t.equal(testCaseName({ Request: { Path: '/v2' }, Backend: 'echo-v2' }, 3), "3 request to '/v2' should go to echo-v2");
  t.equal(
    testCaseName({ Request: { Host: 'echo', Path: '/port', UnfollowRedirect: true }, Response: { StatusCode: 302 } }, 0),
    "0 request to 'echo/port' should receive one of []",
  );
});

t.test('the weight check as utils/weight', async (t) => {
  t.equal(extractBackendName('echo-v1-849f567bd-2fpqh'), 'echo-v1');
  t.equal(extractBackendName('echo'), 'echo');
  const batch = (v1: number, v2: number) => [...Array(v1).fill('echo-v1-a-b'), ...Array(v2).fill('echo-v2-c-d')];
  t.equal(weightedDistribution(batch(350, 150), { 'echo-v1': 0.7, 'echo-v2': 0.3 }), null, '70/30 exactly');
  t.equal(weightedDistribution(batch(325, 175), { 'echo-v1': 0.7, 'echo-v2': 0.3 }), null, '65/35: on the tolerance');
  t.match(
    weightedDistribution(batch(320, 180), { 'echo-v1': 0.7, 'echo-v2': 0.3 }),
    /backend "echo-v1" weighted traffic of 0.64 not within tolerance 0.7/,
  );
  t.match(weightedDistribution(batch(500, 0), { 'echo-v1': 0.7, 'echo-v2': 0.3 }), /expected 2 backends to receive traffic, but got 1/);
  t.match(
    weightedDistribution([...batch(349, 150), ''], { 'echo-v1': 0.7, 'echo-v2': 0.3 }),
    /unexpected pod ""/,
    'an answer from no pod fails the batch',
  );
  t.match(weightedDistribution(batch(10, 10), { 'echo-v1': 0.7, 'echo-v2': 0.3 }), /expected 500 responses but got 20/);
});
