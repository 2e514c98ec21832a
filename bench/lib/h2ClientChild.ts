// One of the upstream HTTP/2 clients the sidecar could have used, driving gRPC unary calls (raw
// framing) at argv[3] (address:port): argv[2] "node-http2" (one node:http2 session) or "undici"
// (undici's H2CClient). argv[4] in flight for argv[5] ms after a 1 s warm-up.
// Prints {"calls","errors","seconds"}: bench/grpc.ts --upstream-clients compares the two.
import { connect, type ClientHttp2Session } from 'node:http2';
import { H2CClient } from 'undici';

const [kind, target, inFlightArg, durationArg] = process.argv.slice(2);
if (kind !== 'node-http2' && kind !== 'undici')
  throw new Error(`h2ClientChild: unknown client ${JSON.stringify(kind)}: expected node-http2 or undici`);
const inFlight = Number(inFlightArg ?? 64);
const durationMs = Number(durationArg ?? 3000);
// Msg { data: 100 bytes } as a length-prefixed gRPC message.
const msg = Buffer.concat([Buffer.from([0x12, 100]), Buffer.alloc(100, 1)]);
const body = Buffer.concat([Buffer.from([0, 0, 0, 0, msg.length]), msg]);
const headers = { ':method': 'POST', ':path': '/shoal.test.Echo/Unary', 'content-type': 'application/grpc', te: 'trailers' };

let measuring = false;
let stop = false;
let calls = 0;
let errors = 0;
const done = (ok: boolean) => {
  if (!measuring) return;
  if (ok) calls++;
  else errors++;
};

let session: ClientHttp2Session | null = null;
let undici: H2CClient | null = null;
if (kind === 'node-http2') {
  session = connect(`http://${target}`);
  await new Promise((r) => session!.once('connect', r));
} else {
  undici = new H2CClient(`http://${target}`, { maxConcurrentStreams: 100, pipelining: 100 });
}

function one(): Promise<void> {
  return new Promise((resolve) => {
    if (session !== null) {
      const st = session.request(headers);
      let status = '';
      st.on('response', (h) => {
        if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
      });
      st.on('trailers', (h) => {
        status = String(h['grpc-status']);
      });
      st.on('data', () => {});
      st.on('error', () => {});
      st.on('close', () => {
        done(status === '0');
        resolve();
      });
      st.end(body);
      return;
    }
    undici!.dispatch(
      { method: 'POST', path: headers[':path'], headers: { 'content-type': 'application/grpc', te: 'trailers' }, body },
      {
        onRequestStart() {},
        onResponseStart() {},
        onResponseData() {},
        onResponseEnd(_c, trailers) {
          done(trailers['grpc-status'] === '0');
          resolve();
        },
        onResponseError() {
          done(false);
          resolve();
        },
      },
    );
  });
}

async function worker(): Promise<void> {
  while (!stop) await one();
}

const workers = Array.from({ length: inFlight }, worker);
await new Promise((r) => setTimeout(r, 1000));
measuring = true;
const t0 = performance.now();
await new Promise((r) => setTimeout(r, durationMs));
measuring = false;
const seconds = (performance.now() - t0) / 1000;
stop = true;
await Promise.all(workers);
process.stdout.write(`${JSON.stringify({ calls, errors, seconds })}\n`);
session?.close();
await undici?.close();
process.exit(0);
