// Malformed responses from an upstream, through a real sidecar's outbound listener: the fast path
// (bodiless requests) must answer them as the node:http/undici path (requests with a body) does, a
// clean 502 upstream-reset, and never pass them on; the upstream connection is not used again. And
// an upstream's `Connection: content-length` must not strip the framing of a kept-alive response.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { Agent, request, type Dispatcher } from 'undici';
import { freePort, randomLoopback, service, startSidecar, waitFor } from '../fixtures.ts';
import { Llhttp } from '../../lib/llhttp.ts';

interface RawUpstream {
  endpoint: string;
  /** Per request served: its method, path and the socket it came on. */
  served: { method: string; path: string; socket: Socket }[];
}

/** An upstream that answers each request (head plus Content-Length body) with the bytes `respond` gives, and never closes first. */
async function rawUpstream(t: Test, respond: (method: string, path: string) => string): Promise<RawUpstream> {
  const up: RawUpstream = { endpoint: '', served: [] };
  const server = createServer((s: Socket) => {
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        const len = Number(/\r\ncontent-length: *([0-9]+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        buf = buf.slice(end + 4 + len);
        const [method, path] = head.split(' ');
        up.served.push({ method, path, socket: s });
        s.write(respond(method, path), 'latin1');
      }
    });
    s.on('error', () => {});
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  up.endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return up;
}

/** A sidecar whose outbound listener routes to the upstream; no retries, a 5 s deadline, no ejection. */
async function sidecarTo(t: Test, endpoint: string): Promise<string> {
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(
    t,
    `services:\n${service('api', address, port, [endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { RetryAttempts: 0, RequestTimeoutMS: 5000, ConsecutiveErrors: 1000 } }
`,
  );
  return `http://${address}:${port}`;
}

/** Writes text on one connection and collects what comes back until `done` says so, the server closes, or 5 s pass. */
function exchange(url: string, text: string, done: (got: string) => boolean): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname);
    let out = '';
    const timer = setTimeout(() => s.destroy(), 5000);
    s.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (done(out)) s.destroy();
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', () => {});
    s.write(text, 'latin1');
  });
}

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

/** Status, x-shoal-error and body of an answer; status 0 and the client's error when there is none. */
async function answer(p: Promise<Dispatcher.ResponseData>): Promise<{ status: number; error: string; body: string }> {
  try {
    const r = await p;
    return { status: r.statusCode, error: String(r.headers['x-shoal-error'] ?? ''), body: await r.body.text() };
  } catch (e) {
    return { status: 0, error: `client: ${(e as Error).message}`, body: '' };
  }
}

// Each was passed on verbatim by the fast path (the undici path answered 502).
const MALFORMED: Record<string, string> = {
  'Content-Length and Transfer-Encoding':
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'bare LF line ends': 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok',
  'a bare LF in a field value': 'HTTP/1.1 200 OK\r\nX-A: a\nb\r\nContent-Length: 2\r\n\r\nok',
  'a bare CR in the status line': 'HTTP/1.1 200 O\rK\r\nContent-Length: 2\r\n\r\nok',
  'a bare CR in a field value': 'HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok',
  'NUL in the status line': 'HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok',
  'NUL in a field value': 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok',
  'a field name with a space': 'HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 2\r\n\r\nok',
  'Transfer-Encoding : chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
  'obs-fold': 'HTTP/1.1 200 OK\r\nX-A: a\r\n b: c\r\nContent-Length: 2\r\n\r\nok',
  '101 to a request that asked for no upgrade': 'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n',
  'a malformed chunked body': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n',
};
// A body error the undici path finds after it sent the head: it can only cut the connection.
const BODY_ERRORS = new Set(['a malformed chunked body']);

t.test('malformed upstream response heads: a clean 502 upstream-reset on the fast path, as on the undici path', async (t) => {
  const names = Object.keys(MALFORMED);
  const up = await rawUpstream(t, (_, path) => {
    const i = Number(/^\/bad\/([0-9]+)$/.exec(path)?.[1] ?? -1);
    return i >= 0 ? MALFORMED[names[i]] : OK;
  });
  const url = await sidecarTo(t, up.endpoint);
  // One client connection stays on the fast path (never a body); the first body hands the other to node:http for good.
  const fastClient = new Agent({ connections: 1, headersTimeout: 6000, bodyTimeout: 6000 });
  const slowClient = new Agent({ connections: 1, headersTimeout: 4000, bodyTimeout: 4000 });
  t.teardown(async () => {
    await fastClient.destroy();
    await slowClient.destroy();
  });
  for (const [i, name] of names.entries()) {
    const fast = await answer(request(`${url}/bad/${i}`, { dispatcher: fastClient }));
    t.equal(fast.status, 502, `fast path: ${name}: 502 (${fast.body.trim()})`);
    t.equal(fast.error, 'upstream-reset', `fast path: ${name}: upstream-reset`);
    const used = up.served.findLast((s) => s.path === `/bad/${i}`);
    t.ok(used, `the upstream saw the request: ${name}`);
    if (used)
      await waitFor(
        () => used.socket.destroyed || used.socket.readableEnded,
        `the sidecar to close the upstream connection after: ${name}`,
        5000,
      ).then(
        () => t.pass(`the upstream connection is not reused: ${name}`),
        (e: Error) => t.fail(e.message),
      );
    // The undici path, for the same response.
    const slow = await answer(request(`${url}/bad/${i}`, { method: 'POST', body: 'x', dispatcher: slowClient }));
    if (BODY_ERRORS.has(name))
      t.not(
        `${slow.status} ${slow.body}`,
        '200 ok',
        `undici path: ${name}: not passed on as a complete response (${slow.status} ${slow.error})`,
      );
    else {
      t.equal(slow.status, 502, `undici path: ${name}: 502 too (${slow.body.trim().slice(0, 120)})`);
      t.equal(slow.error, 'upstream-reset', `undici path: ${name}: upstream-reset too`);
    }
    // A well-formed answer still gets through (and keeps the endpoint's error streak short).
    t.equal((await answer(request(`${url}/ok`, { dispatcher: fastClient }))).body, 'ok', `the next request works: ${name}`);
  }
});

t.test('Connection: content-length keeps the framing: two kept-alive responses reach the client intact', async (t) => {
  const up = await rawUpstream(t, (_, path) =>
    path === '/first'
      ? 'HTTP/1.1 200 OK\r\nConnection: content-length, x-hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nfirst'
      : 'HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n',
  );
  const url = await sidecarTo(t, up.endpoint);
  const ll = new Llhttp();
  t.teardown(() => ll.close());
  const paths = [
    ['fast path', ''],
    ['undici path', 'content-length: 1\r\n\r\nx'],
  ] as const;
  for (const [which, body] of paths) {
    const req = (path: string) => `${body === '' ? 'GET' : 'POST'} ${path} HTTP/1.1\r\nhost: api\r\n${body === '' ? '\r\n' : body}`;
    const got = await exchange(url, req('/first') + req('/second'), (s) => s.includes('second') && s.endsWith('0\r\n\r\n'));
    const [r] = await ll.parseAll([{ mode: 'response', data: got }]);
    t.equal(r.error, null, `${which}: the client parses what it got (${r.error} ${r.reason})`);
    t.same(
      r.messages.map((m) => [m.statusCode, m.body, m.complete]),
      [
        [200, 'first', true],
        [200, 'second', true],
      ],
      `${which}: both responses, each with its own body`,
    );
    t.notMatch(got, /x-hop|connection: (content-length|transfer-encoding)/i, `${which}: Connection and the fields it lists are gone`);
  }
  t.same(up.served.map((s) => s.path).sort(), ['/first', '/first', '/second', '/second'], 'the upstream answered each request once');
});
