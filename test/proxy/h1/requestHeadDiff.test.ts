// The fast path's request-head parser against llhttp, the parser node:http runs: whatever the fast
// path serves, llhttp reads identically (method, target, headers, no body, same end of head, same
// keep-alive decision); whatever llhttp rejects, the fast path hands to node:http (which answers
// 400). Named cases for each known smuggling vector, the common forms that must stay on the fast
// path, and a seeded differential fuzz run (SHOAL_FUZZ_SEED / SHOAL_FUZZ_CASES to change it; the
// longer run is scripts/fuzzRequestHead.ts).
import t from 'tap';
import { parseRequestHead } from '../../../proxy/http/h1/requestHead.ts';
import { Llhttp } from '../../lib/llhttp.ts';
import { describeFailure, disagreement, fastSegments, fuzz, llhttpAcceptsHead } from '../../lib/h1Fuzz.ts';

const SEED = Number(process.env.SHOAL_FUZZ_SEED ?? 0x5eed17);
const CASES = Number(process.env.SHOAL_FUZZ_CASES ?? 30_000);

const ll = new Llhttp();
t.teardown(() => ll.close());

/**
 * reject: llhttp rejects the first head, so the fast path must hand it off.
 * handoff: llhttp accepts, the fast path leaves it to node:http anyway (a rare or unsupported form).
 * served: the fast path serves every head in it, read exactly as llhttp reads them.
 */
type Expect = 'reject' | 'handoff' | 'served';
const H = 'Host: api\r\n';

const NAMED: [string, Expect, string][] = [
  // Request smuggling: bytes a lenient upstream splits lines or words on.
  [
    'TAB and bare LF in the target hide a second request',
    'reject',
    'GET /a\tHTTP/1.1\nHost:\tx\n\nGET\t/smuggled\tHTTP/1.1\nX:\ty HTTP/1.1\r\nHost: x\r\n\r\n',
  ],
  ['TAB in the target', 'reject', `GET /a\tb HTTP/1.1\r\n${H}\r\n`],
  ['bare LF in the target', 'reject', `GET /a\nb HTTP/1.1\r\n${H}\r\n`],
  ['bare CR in the target', 'reject', `GET /a\rb HTTP/1.1\r\n${H}\r\n`],
  ['VT in the target', 'reject', `GET /a\vb HTTP/1.1\r\n${H}\r\n`],
  ['FF in the target', 'reject', `GET /a\fb HTTP/1.1\r\n${H}\r\n`],
  ['NUL in the target', 'reject', `GET /a\0b HTTP/1.1\r\n${H}\r\n`],
  ['DEL in the target', 'reject', `GET /a\x7fb HTTP/1.1\r\n${H}\r\n`],
  ['NBSP in the target', 'reject', `GET /a\xa0b HTTP/1.1\r\n${H}\r\n`],
  ['obs-text in the target', 'reject', `GET /caf\xe9 HTTP/1.1\r\n${H}\r\n`],
  ['TAB between method and target', 'reject', `GET\t/a HTTP/1.1\r\n${H}\r\n`],
  ['bare LF after the request line', 'reject', `GET /a HTTP/1.1\n${H}\r\n`],
  ['bare LF ends a header line', 'reject', `GET /a HTTP/1.1\r\nHost: x\nX-Smuggled: y\r\n\r\n`],
  ['bare LF LF ends the head before a second request', 'reject', 'GET /a HTTP/1.1\r\nHost: x\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['bare CR in a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: a\rb\r\n\r\n`],
  ['VT in a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: a\vb\r\n\r\n`],
  ['FF in a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: a\fb\r\n\r\n`],
  ['NUL in a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: a\0b\r\n\r\n`],
  ['DEL in a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: a\x7fb\r\n\r\n`],
  ['NUL in the Host value', 'reject', 'GET /a HTTP/1.1\r\nHost: api\0evil\r\n\r\n'],
  ['a space before the colon', 'reject', `GET /a HTTP/1.1\r\n${H}Content-Length : 5\r\n\r\n`],
  ['a space inside a header name', 'reject', `GET /a HTTP/1.1\r\n${H}X Y: v\r\n\r\n`],
  ['obs-fold', 'reject', `GET /a HTTP/1.1\r\n${H}X: a\r\n b\r\n\r\n`],
  ['a header line without a colon', 'reject', `GET /a HTTP/1.1\r\n${H}X\r\n\r\n`],
  ['Content-Length and Transfer-Encoding', 'reject', `POST /a HTTP/1.1\r\n${H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n`],
  // Forms llhttp rejects that the fast path used to accept.
  ['a lower-case method', 'reject', `get /a HTTP/1.1\r\n${H}\r\n`],
  ['a mixed-case method', 'reject', `Get /a HTTP/1.1\r\n${H}\r\n`],
  ['an unknown method', 'reject', `FOO /a HTTP/1.1\r\n${H}\r\n`],
  ['the HTTP/2 preface', 'reject', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
  ['PRI as an HTTP/1.1 method', 'reject', `PRI /a HTTP/1.1\r\n${H}\r\n`],
  ['CR at the end of a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: v\r\r\n\r\n`],
  ['LF at the start of a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: \nv\r\n\r\n`],
  ['VT at the start of a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: \vv\r\n\r\n`],
  ['VT at the end of a header value', 'reject', `GET /a HTTP/1.1\r\n${H}X: v\v\r\n\r\n`],
  ['NBSP after Content-Length: 0', 'reject', `POST /a HTTP/1.1\r\n${H}Content-Length: 0\xa0\r\n\r\n`],
  ['NBSP before Content-Length: 0', 'reject', `POST /a HTTP/1.1\r\n${H}Content-Length: \xa00\r\n\r\n`],
  ['VT before Content-Length: 0', 'reject', `POST /a HTTP/1.1\r\n${H}Content-Length: \v0\r\n\r\n`],
  ['a duplicate Content-Length: 0', 'reject', `POST /a HTTP/1.1\r\n${H}Content-Length: 0\r\nContent-Length: 0\r\n\r\n`],
  ['Content-Length: +0', 'reject', `POST /a HTTP/1.1\r\n${H}Content-Length: +0\r\n\r\n`],
  ['Content-Length: 0 0', 'reject', `POST /a HTTP/1.1\r\n${H}Content-Length: 0 0\r\n\r\n`],
  ['a lower-case version', 'reject', `GET /a http/1.1\r\n${H}\r\n`],
  ['a space after the version', 'reject', `GET /a HTTP/1.1 \r\n${H}\r\n`],
  // llhttp accepts these; the fast path leaves them to node:http.
  ['no Host (node:http answers 400)', 'handoff', 'GET /a HTTP/1.1\r\nUser-Agent: x\r\n\r\n'],
  ['a duplicate Host', 'handoff', `GET /a HTTP/1.1\r\n${H}Host: evil\r\n\r\n`],
  ['Content-Length: 00', 'handoff', `POST /a HTTP/1.1\r\n${H}Content-Length: 00\r\n\r\n`],
  ['a body', 'handoff', `POST /a HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhi`],
  ['chunked', 'handoff', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  ['two spaces before the target', 'handoff', `GET  /a HTTP/1.1\r\n${H}\r\n`],
  ['two spaces after the target', 'handoff', `GET /a  HTTP/1.1\r\n${H}\r\n`],
  ['an empty line before the request line', 'handoff', `\r\nGET /a HTTP/1.1\r\n${H}\r\n`],
  ['an absolute-form target', 'handoff', `GET http://api/a HTTP/1.1\r\n${H}\r\n`],
  ['OPTIONS *', 'handoff', `OPTIONS * HTTP/1.1\r\n${H}\r\n`],
  ['CONNECT', 'handoff', `CONNECT api:443 HTTP/1.1\r\n${H}\r\n`],
  ['a method the fast path does not take', 'handoff', `PROPFIND /a HTTP/1.1\r\n${H}\r\n`],
  ['HTTP/1.0', 'handoff', `GET /a HTTP/1.0\r\n${H}\r\n`],
  ['an upgrade', 'handoff', `GET /a HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`],
  ['Expect: 100-continue', 'handoff', `PUT /a HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 0\r\n\r\n`],
  ['Proxy-Connection: close (llhttp closes after it)', 'handoff', `GET /a HTTP/1.1\r\n${H}Proxy-Connection: close\r\n\r\n`],
  [
    'Connection: close\\xa0 (no close for llhttp, not a plain token list)',
    'handoff',
    `GET /a HTTP/1.1\r\n${H}Connection: close\xa0\r\n\r\n`,
  ],
  ['Connection: x close (not a plain token list)', 'handoff', `GET /a HTTP/1.1\r\n${H}Connection: x close\r\n\r\n`],
  // The common forms: served by the fast path, exactly as llhttp reads them.
  ['curl', 'served', 'GET / HTTP/1.1\r\nHost: api:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n'],
  [
    'a browser-like GET',
    'served',
    'GET /api/v1/users/42?include=profile&x=%20y HTTP/1.1\r\nHost: api.default.svc.cluster.local\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.5\r\nCookie: session=abc123; theme=dark\r\nReferer: http://web/page\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n',
  ],
  ['HEAD', 'served', `HEAD /a HTTP/1.1\r\n${H}\r\n`],
  ['DELETE', 'served', `DELETE /items/3 HTTP/1.1\r\n${H}Authorization: Bearer x.y.z\r\n\r\n`],
  ['OPTIONS', 'served', `OPTIONS /a HTTP/1.1\r\n${H}\r\n`],
  [
    'POST, PUT and PATCH with Content-Length: 0, pipelined',
    'served',
    `POST /a HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\nPUT /b HTTP/1.1\r\n${H}content-length:  0 \r\n\r\nPATCH /c HTTP/1.1\r\n${H}CONTENT-LENGTH:0\r\n\r\n`,
  ],
  ['Connection: close', 'served', `GET /a HTTP/1.1\r\n${H}Connection: close\r\n\r\n`],
  ['Connection: te, close', 'served', `GET /a HTTP/1.1\r\n${H}TE: trailers\r\nConnection: te, close\r\n\r\n`],
  ['an empty value and OWS around values', 'served', `GET /a HTTP/1.1\r\nHost:api\r\nX-Empty:\r\nX-Ows: \t a\tb \t\r\n\r\n`],
  ['NBSP at the edges of a value belongs to the value', 'served', `GET /a HTTP/1.1\r\n${H}X: \xa0v\xa0\r\n\r\n`],
  ['obs-text in a value', 'served', `GET /a HTTP/1.1\r\n${H}X: caf\xe9 \xff\r\n\r\n`],
  ['every visible byte in the target', 'served', `GET /!"#$%&'()*+,-./09:;<=>?@AZ[\\]^_\`az{|}~ HTTP/1.1\r\n${H}\r\n`],
  ['three pipelined GETs', 'served', `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}\r\nGET /3 HTTP/1.1\r\n${H}\r\n`],
];

t.test('named cases: each smuggling vector is handed off, the common forms are served', async (t) => {
  const segs = NAMED.map(([, , data]) => fastSegments(data));
  const lls = await ll.parseAll(segs.map((s) => ({ mode: 'request' as const, data: s[0]?.head ?? '' })));
  for (const [i, [name, expect, data]] of NAMED.entries()) {
    const first = segs[i][0];
    const what = `${name}: ${JSON.stringify(data)}`;
    if (first === undefined) {
      t.fail(`${what}: no complete head`);
      continue;
    }
    if (expect === 'reject') {
      t.notOk(llhttpAcceptsHead(lls[i]) && lls[i].messages[0].complete, `${what}: llhttp rejects it (${lls[i].error})`);
      t.equal(first.fast, null, `${what}: handed to node:http`);
    } else if (expect === 'handoff') {
      t.ok(llhttpAcceptsHead(lls[i]), `${what}: llhttp accepts it (${lls[i].error})`);
      t.equal(first.fast, null, `${what}: handed to node:http`);
    } else {
      const all = await ll.parseAll(segs[i].map((s) => ({ mode: 'request' as const, data: s.head })));
      t.equal(segs[i].length, data.split('HTTP/1.1\r\n').length - 1, `${what}: every head read`);
      segs[i].forEach((s, k) => {
        t.not(s.fast, null, `${what}: head ${k + 1} served by the fast path`);
        if (s.fast) t.equal(disagreement(s.fast, all[k]), null, `${what}: head ${k + 1} read as llhttp reads it`);
      });
    }
  }
});

t.test('a head node:http would answer 431 (16 KiB of target and headers) is handed off', async (t) => {
  const head = (valueLength: number) => Buffer.from(`GET /a HTTP/1.1\r\n${H}X: ${'v'.repeat(valueLength)}\r\n\r\n`, 'latin1');
  const small = head(16_000);
  t.not(parseRequestHead(small, small.indexOf('\r\n\r\n')), null, 'just under the limit: served');
  const big = head(16_400);
  t.equal(parseRequestHead(big, big.indexOf('\r\n\r\n')), null, 'over it: node:http decides');
});

t.test(`differential fuzz against llhttp: seed ${SEED}, ${CASES} inputs`, async (t) => {
  const started = Date.now();
  const { stats, failures } = await fuzz(ll, { seed: SEED, count: CASES, maxFailures: 5 });
  t.comment(
    `seed ${SEED}: ${stats.inputs} inputs in ${Date.now() - started} ms; heads served and read identically by llhttp: ${stats.accepted}; handed off although llhttp accepts: ${stats.handedOff}; rejected by both: ${stats.rejected}; no complete head: ${stats.noHead}`,
  );
  for (const f of failures)
    t.fail(`the fast path serves a head llhttp reads differently (replay with SHOAL_FUZZ_SEED=${SEED}): ${describeFailure(f)}`);
  t.equal(failures.length, 0, 'no disagreement');
  if (failures.length === 0) {
    t.equal(stats.inputs, CASES, 'every input ran');
    // The generator reaches all three outcomes, and the fast path is not silently disabled.
    const heads = stats.accepted + stats.handedOff + stats.rejected;
    t.ok(stats.accepted > heads * 0.2, `over 20% of the heads are served by the fast path (${stats.accepted} of ${heads})`);
    t.ok(stats.rejected > heads * 0.2, `over 20% of the heads are ones llhttp rejects (${stats.rejected} of ${heads})`);
    t.ok(stats.handedOff > 0, 'some heads llhttp accepts are left to node:http');
  }
});
