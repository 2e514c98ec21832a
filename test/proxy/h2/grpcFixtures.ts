// gRPC pieces of the h2 tests: @grpc/grpc-js servers of the Echo service on loopback, and clients.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { Test } from 'tap';
import { randomLoopback } from '../fixtures.ts';

const here = dirname(fileURLToPath(import.meta.url));
const def = loadSync(join(here, 'echo.proto'), { keepCase: false, longs: Number, defaults: true });
const pkg = grpc.loadPackageDefinition(def) as unknown as { shoal: { test: { Echo: grpc.ServiceClientConstructor } } };
export const Echo = pkg.shoal.test.Echo;

export interface Msg {
  server: string;
  data: Buffer;
  delayMs: number;
}

export interface EchoServer {
  name: string;
  address: string;
  port: number;
  endpoint: string;
  calls: number;
  server: grpc.Server;
  /** Unary answers: null = normal; else this status. */
  fail: grpc.status | null;
  /** Watch streams open now. */
  watching: number;
}

type Handlers = Partial<Record<'Unary' | 'Bidi' | 'Watch', grpc.UntypedHandleCall>>;

/** An Echo server: Unary echoes after delayMs, Bidi echoes every message, Watch sends one message per 50 ms until cancelled. */
export async function echoServer(t: Test, name: string, overrides: Handlers = {}): Promise<EchoServer> {
  const address = randomLoopback();
  const s = { name, address, port: 0, endpoint: '', calls: 0, server: new grpc.Server(), fail: null, watching: 0 } as EchoServer;
  const handlers: Handlers = {
    Unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      s.calls++;
      if (s.fail !== null) {
        cb({ code: s.fail, details: `${name} says no` });
        return;
      }
      const reply = () => cb(null, { server: name, data: call.request.data, delayMs: 0 });
      if (call.request.delayMs > 0) setTimeout(reply, call.request.delayMs);
      else reply();
    },
    Bidi: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
      s.calls++;
      call.on('data', (m: Msg) => {
        if (!call.write({ server: name, data: m.data, delayMs: 0 })) {
          call.pause();
          call.once('drain', () => call.resume());
        }
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
    Watch: (call: grpc.ServerWritableStream<Msg, Msg>) => {
      s.calls++;
      s.watching++;
      let n = 0;
      const timer = setInterval(() => call.write({ server: name, data: Buffer.from(String(n++)), delayMs: 0 }), 50);
      const stop = () => {
        clearInterval(timer);
        s.watching--;
      };
      call.once('cancelled', stop);
      call.once('close', () => clearInterval(timer));
    },
    ...overrides,
  };
  s.server.addService(Echo.service, handlers as grpc.UntypedServiceImplementation);
  s.port = await new Promise<number>((resolve, reject) =>
    s.server.bindAsync(`${address}:0`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  s.endpoint = `${address}:${s.port}`;
  t.teardown(() => s.server.forceShutdown());
  return s;
}

export type EchoClient = grpc.Client & {
  Unary(
    m: Partial<Msg>,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, r: Msg) => void,
  ): grpc.ClientUnaryCall;
  Bidi(md?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientDuplexStream<Partial<Msg>, Msg>;
  Watch(m: Partial<Msg>, md?: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientReadableStream<Msg>;
};

/** One client channel to target ("address:port"); closed at teardown. */
export function echoClient(t: Test, target: string, options: grpc.ChannelOptions = {}): EchoClient {
  const c = new Echo(target, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 << 20,
    ...options,
  }) as unknown as EchoClient;
  t.teardown(() => c.close());
  return c;
}

export interface UnaryResult {
  msg: Msg | null;
  err: grpc.ServiceError | null;
  ms: number;
  trailers: grpc.Metadata | null;
}

export function unary(c: EchoClient, m: Partial<Msg> = {}, opts: grpc.CallOptions = {}): Promise<UnaryResult> {
  const start = performance.now();
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | null = null;
    const call = c.Unary(m, new grpc.Metadata(), opts, (err, r) => {
      setImmediate(() => resolve({ msg: err ? null : r, err, ms: performance.now() - start, trailers }));
    });
    call.on('status', (st: grpc.StatusObject) => {
      trailers = st.metadata;
    });
  });
}

export { grpc };
