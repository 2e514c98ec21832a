// The load of bench/grpc.ts: one @grpc/grpc-js channel to argv[2] (address:port), argv[3] unary calls
// in flight for argv[4] ms after a 1 s warm-up; prints {"calls","errors","seconds","p50Ms","p99Ms","total"}
// (total: every call the process made, warm-up included, to divide other processes' CPU by).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const [target, inFlightArg, durationArg, payloadArg] = process.argv.slice(2);
const inFlight = Number(inFlightArg ?? 32);
const durationMs = Number(durationArg ?? 5000);
const payload = Buffer.alloc(Number(payloadArg ?? 100), 1);
const proto = join(dirname(fileURLToPath(import.meta.url)), '../../test/proxy/h2/echo.proto');
const pkg = grpc.loadPackageDefinition(loadSync(proto, { defaults: true })) as unknown as {
  shoal: { test: { Echo: grpc.ServiceClientConstructor } };
};
type Unary = (m: unknown, cb: (err: grpc.ServiceError | null) => void) => void;
const client = new pkg.shoal.test.Echo(target, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Unary: Unary };

let measuring = false;
let stop = false;
let calls = 0;
let errors = 0;
let total = 0;
const latencies: number[] = [];

function one(): Promise<void> {
  const start = performance.now();
  return new Promise((resolve) =>
    client.Unary({ data: payload }, (err) => {
      total++;
      if (measuring) {
        if (err) errors++;
        else calls++;
        latencies.push(performance.now() - start);
      }
      resolve();
    }),
  );
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
latencies.sort((a, b) => a - b);
const q = (p: number) =>
  latencies.length === 0 ? null : Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] * 1000) / 1000;
process.stdout.write(`${JSON.stringify({ calls, errors, seconds, p50Ms: q(0.5), p99Ms: q(0.99), total })}\n`);
client.close();
process.exit(0);
