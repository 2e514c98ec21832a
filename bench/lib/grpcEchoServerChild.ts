// The gRPC server of bench/grpc.ts: the Echo service of the h2 tests (unary only matters here), on
// argv[2] (address); prints "port N" once bound.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const proto = join(dirname(fileURLToPath(import.meta.url)), '../../test/proxy/h2/echo.proto');
const pkg = grpc.loadPackageDefinition(loadSync(proto, { defaults: true })) as unknown as {
  shoal: { test: { Echo: grpc.ServiceClientConstructor } };
};
const server = new grpc.Server();
server.addService(pkg.shoal.test.Echo.service, {
  Unary: (call: grpc.ServerUnaryCall<{ data: Buffer }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
    cb(null, { server: 'bench', data: call.request.data }),
  Bidi: (call: grpc.ServerDuplexStream<unknown, unknown>) => call.end(),
  Watch: (call: grpc.ServerWritableStream<unknown, unknown>) => call.end(),
});
server.bindAsync(`${process.argv[2] ?? '127.0.0.1'}:0`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`port ${port}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
