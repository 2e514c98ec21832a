// Bodies stream through with backpressure (never buffered whole), and WebSocket upgrades are tunnelled.
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import type { Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { freePort, httpBackend, randomLoopback, service, startSidecar } from '../fixtures.ts';

const MB = 1024 * 1024;

async function sidecarFor(t: Test, endpoint: string) {
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(
    t,
    `services:\n${service('api', address, port, [endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http }
`,
  );
  return `http://${address}:${port}`;
}

t.test('a 10 MB upload streams: the backend sees data before the upload ends', async (t) => {
  let received = 0;
  let firstByteAtSent = -1;
  let sent = 0;
  const hash = createHash('sha256');
  const b = await httpBackend(t, 'sink', (req, res) => {
    req.on('data', (c: Buffer) => {
      if (received === 0) firstByteAtSent = sent;
      received += c.length;
      hash.update(c);
    });
    req.on('end', () => res.end(String(received)));
  });
  const url = await sidecarFor(t, b.endpoint);
  const chunk = Buffer.alloc(64 * 1024, 7);
  const sent256 = createHash('sha256');
  const body = Readable.from(
    (async function* () {
      for (let i = 0; i < 160; i++) {
        sent += chunk.length;
        sent256.update(chunk);
        yield chunk;
        if (i % 16 === 0) await new Promise((r) => setTimeout(r, 20));
      }
    })(),
  );
  const r = await request(`${url}/upload`, { method: 'POST', body });
  t.equal(r.statusCode, 200);
  t.equal(await r.body.text(), String(10 * MB));
  t.equal(hash.digest('hex'), sent256.digest('hex'), 'the bytes arrive intact');
  t.ok(firstByteAtSent >= 0 && firstByteAtSent < 5 * MB, `the backend saw the first byte after ${firstByteAtSent} bytes were sent`);
});

t.test('a 10 MB download arrives intact; a paused reader holds the backend back', async (t) => {
  const big = 96 * MB;
  let written = 0;
  const b = await httpBackend(t, 'source', (req, res) => {
    req.resume();
    const total = req.url === '/big' ? big : 10 * MB;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    const chunk = Buffer.alloc(64 * 1024, 3);
    const pump = () => {
      while (written < total) {
        const n = Math.min(chunk.length, total - written);
        written += n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
      }
      res.end();
    };
    written = 0;
    pump();
  });
  const url = await sidecarFor(t, b.endpoint);
  const r = await request(`${url}/ten`);
  let n = 0;
  for await (const c of r.body) n += (c as Buffer).length;
  t.equal(n, 10 * MB, 'all 10 MB arrived');

  const slow = await request(`${url}/big`);
  const it = slow.body[Symbol.asyncIterator]();
  let got = 0;
  while (got < MB) got += ((await it.next()).value as Buffer).length;
  await new Promise((r) => setTimeout(r, 500));
  t.ok(written < big / 2, `with the reader paused the backend could write only ${(written / MB).toFixed(1)} MB of ${big / MB}`);
  for (;;) {
    const x = await it.next();
    if (x.done) break;
    got += (x.value as Buffer).length;
  }
  t.equal(got, big, 'the rest arrives after the reader resumes');
});

function acceptKey(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0E85DC11`).digest('base64');
}

/** A tiny WebSocket echo server: unmasks client frames and sends them back unmasked. */
function echoFrames(socket: Duplex): void {
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      }
      const masked = (buf[1] & 0x80) !== 0;
      const need = off + (masked ? 4 : 0) + len;
      if (buf.length < need) return;
      const mask = masked ? buf.subarray(off, off + 4) : null;
      const payload = Buffer.from(buf.subarray(off + (masked ? 4 : 0), need));
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      buf = buf.subarray(need);
      if (opcode === 8) {
        socket.end(Buffer.from([0x88, 0]));
        return;
      }
      const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : Buffer.from([0x80 | opcode, 126, len >> 8, len & 0xff]);
      socket.write(Buffer.concat([head, payload]));
    }
  });
}

/** Client side of a WebSocket over node:http: handshake, then masked frames out, frames back. */
function wsConnect(url: string): Promise<{ socket: Duplex; status: number; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const key = randomBytes(16).toString('base64');
    const req = httpRequest(url, {
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': key, 'sec-websocket-version': '13' },
    });
    req.on('upgrade', (res, socket) => {
      if (res.headers['sec-websocket-accept'] !== acceptKey(key)) reject(new Error('bad accept key'));
      resolve({ socket, status: res.statusCode ?? 0, headers: res.headers });
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ socket: res.socket, status: res.statusCode ?? 0, headers: res.headers });
    });
    req.on('error', reject);
    req.end();
  });
}

function maskedFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const head =
    payload.length < 126
      ? Buffer.from([0x81, 0x80 | payload.length])
      : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, payload]);
}

function readFrames(socket: Duplex, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: string[] = [];
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        }
        if (buf.length < off + len) return;
        out.push(buf.subarray(off, off + len).toString());
        buf = buf.subarray(off + len);
        if (out.length === count) return resolve(out);
      }
    });
    socket.on('error', reject);
    setTimeout(() => reject(new Error(`only ${out.length} of ${count} frames within 5 s`)), 5000).unref();
  });
}

t.test('WebSocket echo through the sidecar', async (t) => {
  const b = await httpBackend(t, 'ws');
  const open = new Set<Duplex>();
  t.teardown(() => {
    for (const s of open) s.destroy();
  });
  b.server.on('upgrade', (req, socket: Duplex) => {
    open.add(socket);
    const key = req.headers['sec-websocket-key'] as string;
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\nX-Backend: ws\r\n\r\n`,
    );
    echoFrames(socket);
  });
  const url = await sidecarFor(t, b.endpoint);
  const { socket, status, headers } = await wsConnect(`${url}/chat`);
  t.equal(status, 101);
  t.equal(headers['x-backend'], 'ws', "the backend's 101 head comes through");
  const frames = readFrames(socket, 2);
  socket.write(maskedFrame('hello'));
  socket.write(maskedFrame('x'.repeat(1000)));
  t.same(await frames, ['hello', 'x'.repeat(1000)], 'both frames echoed');
  socket.destroy();
});

t.test('an upgrade the backend refuses is passed back as it is', async (t) => {
  const b = await httpBackend(t, 'no-ws');
  b.server.on('upgrade', (_req, socket: Duplex) => {
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope');
  });
  const url = await sidecarFor(t, b.endpoint);
  const { status, socket } = await wsConnect(`${url}/chat`);
  t.equal(status, 403, 'the client sees the refusal, not a hang');
  socket.destroy();
});
