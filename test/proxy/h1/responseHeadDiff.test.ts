// The fast path's response side against llhttp, the parser node:http and undici run (strict): a
// seeded differential fuzz run of response heads (with interim heads and bodies) and chunked bodies,
// the deliberate differences listed one by one, and the malformed heads upstreams were seen to send.
// Longer runs: node scripts/fuzzResponseHead.ts --cases N --seed S.
import t from 'tap';
import { ChunkedScanner } from '../../../proxy/http/h1/chunkedScanner.ts';
import { Framing, parseResponseHead, type ResponseHead } from '../../../proxy/http/h1/responseHead.ts';
import { Llhttp } from '../../lib/llhttp.ts';
import {
  checkChunked,
  checkResponse,
  describeFailure,
  runFuzz,
  scanChunked,
  simulate,
  STRICTER_CHUNKED,
  STRICTER_HEADS,
} from '../../lib/h1ResponseFuzz.ts';

const SEED = Number(process.env.SHOAL_FUZZ_SEED ?? 20250117);
const CASES = Number(process.env.SHOAL_FUZZ_CASES ?? 10000);

const ll = new Llhttp();
t.teardown(() => ll.close());

function head(text: string, method = 'GET', clientClose = false): ResponseHead | string {
  const buf = Buffer.from(text, 'latin1');
  return parseResponseHead(buf, buf.indexOf('\r\n\r\n'), method, clientClose);
}

t.test(`differential fuzz against llhttp: ${CASES} responses and ${CASES} chunked bodies, seed ${SEED}`, async (t) => {
  const t0 = performance.now();
  const r = await runFuzz(ll, SEED, CASES, 5);
  t.comment(`seed ${SEED}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  t.comment(`responses ${JSON.stringify(r.responses)}`);
  t.comment(`chunked ${JSON.stringify(r.chunked)}`);
  for (const f of r.failures) t.fail(describeFailure(f));
  t.equal(r.failures.length, 0, `the fast path and llhttp agree on every case of seed ${SEED}`);
  // The generator must reach each outcome often, or agreement means little.
  for (const [name, s] of [
    ['responses', r.responses],
    ['chunked bodies', r.chunked],
  ] as const) {
    t.ok(s.accepted > CASES / 10, `${name}: many accepted by both (${s.accepted})`);
    t.ok(s.refusedByBoth > CASES / 10, `${name}: many refused by both (${s.refusedByBoth})`);
  }
});

// Refused by the fast path although llhttp accepts them: each on purpose (responseHead.ts and
// chunkedScanner.ts say why). The fuzz run accepts a difference only in one of these classes.
const DELIBERATE_HEADS: Record<string, string> = {
  'version other than HTTP/1.0 or HTTP/1.1': 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n',
  'status below 100': 'HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n',
  'reason phrase with a control character other than HTAB': 'HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n',
  '101 to a request that asked for no upgrade': 'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n',
  '1xx with Content-Length or Transfer-Encoding': 'HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\n',
  'Transfer-Encoding other than one field saying chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
  'Content-Length over 2^53 - 1': 'HTTP/1.1 200 OK\r\nContent-Length: 9007199254740993\r\n\r\n',
  // node counts the reason, names and values (16,367 bytes here) against its 16 KiB; the fast path the whole head.
  'head over 16 KiB': `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(16360)}\r\n\r\n`,
  'empty lines before the status line': '\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
};
const DELIBERATE_CHUNKED: Record<string, string> = {
  'chunk size over 2^53 - 1': '20000000000000\r\nabc',
  'Transfer-Encoding as a trailer field': '0\r\nTransfer-Encoding: chunked\r\n\r\n',
  'chunk extensions within a few bytes of 16 KiB': `1;${'e'.repeat(16383)}\r\nx\r\n0\r\n\r\n`,
  'trailer section within a few bytes of 16 KiB': `0\r\nX: ${'a'.repeat(16381)}\r\n\r\n`,
};

t.test('the deliberate differences from llhttp are exactly these, and each is one', async (t) => {
  t.same(STRICTER_HEADS.map((s) => s.name).sort(), Object.keys(DELIBERATE_HEADS).sort(), 'head classes');
  t.same(STRICTER_CHUNKED.map((s) => s.name).sort(), Object.keys(DELIBERATE_CHUNKED).sort(), 'chunked body classes');
  for (const [name, data] of Object.entries(DELIBERATE_HEADS)) {
    const [l] = await ll.parseAll([{ mode: 'response', data }]);
    t.equal(l.error, null, `llhttp accepts: ${name}`);
    const c = checkResponse({ data, method: 'GET' });
    t.equal(c.sim.outcome, 'reject', `the fast path refuses: ${name} (${c.sim.reason})`);
    t.equal(c.judge(await ll.parseAll(c.parses)), null, name);
    t.equal(c.stricter, name, `recognised as: ${name}`);
  }
  for (const [name, body] of Object.entries(DELIBERATE_CHUNKED)) {
    const c = checkChunked({ body, splits: [] });
    t.match(c.outcome, /^error: /, `the scanner refuses: ${name} (${c.outcome})`);
    t.equal(c.judge(await ll.parseAll(c.parses)), null, name);
    t.equal(c.stricter, name, `recognised as: ${name}`);
  }
});

t.test('malformed heads upstreams send are refused, as llhttp refuses them (or one of the classes above)', async (t) => {
  const bad: Record<string, string> = {
    'Content-Length and Transfer-Encoding': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'Transfer-Encoding and Content-Length': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
    'two Content-Length': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok',
    'Content-Length: 1 2': 'HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\nok',
    'Content-Length: +2': 'HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok',
    'bare LF ending the status line': 'HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok',
    'bare LF ending a field line': 'HTTP/1.1 200 OK\r\nContent-Length: 2\nX: y\r\n\r\nok',
    'bare LF only': 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok',
    'bare CR in the status line': 'HTTP/1.1 200 O\rK\r\nContent-Length: 2\r\n\r\nok',
    'bare CR in a value': 'HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok',
    'NUL in the status line': 'HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok',
    'NUL in a value': 'HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nok',
    'DEL in a value': 'HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 2\r\n\r\nok',
    'VT in a value': 'HTTP/1.1 200 OK\r\nX: a\x0bb\r\nContent-Length: 2\r\n\r\nok',
    'a field name with a space': 'HTTP/1.1 200 OK\r\nX Y: z\r\nContent-Length: 2\r\n\r\nok',
    'Transfer-Encoding : chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    'Content-Length<TAB>: 2': 'HTTP/1.1 200 OK\r\nContent-Length\t: 2\r\n\r\nok',
    'obs-fold': 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok',
    'obs-fold with a colon': 'HTTP/1.1 200 OK\r\nX: a\r\n\tb: c\r\nContent-Length: 2\r\n\r\nok',
    'a field line starting with a space': 'HTTP/1.1 200 OK\r\n X: a\r\nContent-Length: 2\r\n\r\nok',
    '101 to a request without Upgrade': 'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n',
    'Transfer-Encoding: chunked, gzip': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc',
    'Transfer-Encoding: gzip': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc',
    'Transfer-Encoding: chunked<TAB>': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n',
    'status code 2000': 'HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok',
    'HTTP/1.2': 'HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok',
    'a 1xx that closes the connection':
      'HTTP/1.1 103 Early Hints\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  };
  for (const [name, data] of Object.entries(bad)) {
    const c = checkResponse({ data, method: 'GET' });
    t.equal(c.sim.outcome, 'reject', `refused: ${name} (${c.sim.reason})`);
    t.equal(c.judge(await ll.parseAll(c.parses)), null, `llhttp refuses it too, or it is a listed difference: ${name}`);
  }
});

t.test('Connection never removes the framing, and framing follows the fields forwarded', async (t) => {
  const r = head('HTTP/1.1 200 OK\r\nConnection: content-length, x-hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\n');
  if (typeof r === 'string') return t.fail(r);
  t.equal(r.head, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n', 'Content-Length stays; Connection and the X-Hop it lists go');
  t.equal(r.framing, Framing.Length);
  t.equal(r.keepAlive, true);
  const c = head('HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n');
  if (typeof c === 'string') return t.fail(c);
  t.equal(c.framing, Framing.Chunked);
  t.equal(c.head, 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
  // Two responses on one kept-alive upstream connection: each ends where llhttp ends it.
  const two =
    'HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond';
  const sim = simulate(Buffer.from(two, 'latin1'), 'GET');
  t.equal(sim.outcome, 'accept');
  t.equal(sim.forwarded, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst');
  const [l] = await ll.parseAll([{ mode: 'response', data: sim.forwarded + two.slice(sim.consumed) }]);
  t.same(
    l.messages.map((m) => m.body),
    ['first', 'second'],
    'a client reads both responses intact',
  );
});

t.test('rewriting: hop-by-hop fields go, HTTP/1.0 becomes 1.1, close and reuse follow llhttp', async (t) => {
  const r = head('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nTE: trailers\r\nX: y\r\n\r\n');
  if (typeof r === 'string') return t.fail(r);
  t.equal(r.head, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\n\r\n');
  t.equal(r.keepAlive, true, 'HTTP/1.0 with keep-alive is reused');
  const ten = head('HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n');
  t.equal(typeof ten !== 'string' && ten.keepAlive, false, 'HTTP/1.0 without keep-alive is not');
  const closed = head('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n', 'GET', true);
  if (typeof closed === 'string') return t.fail(closed);
  t.equal(closed.head, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\n', 'the client asked to close: said once');
  t.equal(closed.keepAlive, false);
  const eof = head('HTTP/1.1 200 OK\r\nX: y\r\n\r\n');
  t.match(eof, {
    framing: Framing.UntilClose,
    keepAlive: false,
    close: true,
    head: 'HTTP/1.1 200 OK\r\nX: y\r\nconnection: close\r\n\r\n',
  });
  t.match(
    head('HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n'),
    { framing: Framing.None, keepAlive: false },
    'a 204 announcing a body is not reused (as undici)',
  );
  t.match(head('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'HEAD'), {
    framing: Framing.None,
    keepAlive: true,
    head: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n',
  });
  t.match(
    head('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nConnection: keep-alive\r\n\r\n'),
    { status: 103, framing: Framing.None, head: 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' },
    'interim heads are rewritten too',
  );
});

t.test('the chunked scanner reads split input as it reads it whole, and a Connection trailer closes', async (t) => {
  const body = Buffer.from('3;a="x\\"y";b=c\r\nabc\r\n0\r\nX-Sum: 1\r\nConnection: close\r\n\r\nNEXT', 'latin1');
  const whole = scanChunked(body, []);
  t.equal(whole, String(body.length - 4));
  for (let at = 0; at <= body.length; at++) t.equal(scanChunked(body, [at]), whole, `split at ${at}`);
  const s = new ChunkedScanner();
  s.scan(body, 0, body.length);
  t.equal(s.close, true, 'neither connection is used again');
  const bad = new ChunkedScanner();
  t.equal(bad.scan(Buffer.from('3 \r\nabc\r\n0\r\n\r\n'), 0, 15), -1);
  t.equal(bad.error, 'invalid character in a chunk size');
});
