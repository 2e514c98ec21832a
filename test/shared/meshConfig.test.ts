import t from 'tap';
import { ConfigError, defaultDependencyOptions, parseMeshConfig } from '../../shared/meshConfig.ts';

t.test('a ResourceSpec-shaped config with string values parses to typed options', async (t) => {
  const cfg = parseMeshConfig(
    {
      base_ports: [{ port: '8000', protocol: 'http', options: { OPEN_LIMIT: 'YES', LIMIT_RPS: '100', LIMIT_BURST: '20' } }],
      base_services: [
        {
          depend_service_alias: 'api',
          port: '8080',
          protocol: 'http',
          options: {
            Domains: 'api.example, *.api.internal',
            Prefix: '/v1',
            Headers: 'x-a:1;x-b:two',
            Weight: '80',
            MaxRequests: '10',
            ConnectionTimeout: '300',
            TCPIdleTimeout: 60,
          },
        },
        { depend_service_alias: 'db.data', port: 5432, protocol: 'tcp' },
      ],
      base_normal: { options: { LOG_LEVEL: 'debug', N: 3 } },
    },
    'default',
    'web',
  );
  t.same(cfg.ports, [{ port: 8000, listenPort: null, protocol: 'http', limits: { rps: 100, burst: 20, connections: 0 } }]);
  const api = cfg.dependencies[0];
  t.equal(api.service, 'api');
  t.equal(api.namespace, 'default');
  t.same(api.options.domains, ['api.example', '*.api.internal']);
  t.equal(api.options.prefix, '/v1');
  t.same(
    api.options.headers,
    [
      { name: 'x-a', value: '1' },
      { name: 'x-b', value: 'two' },
    ],
    'every header pair kept',
  );
  t.equal(api.options.weight, 80);
  t.equal(api.options.maxRequests, 10);
  t.equal(api.options.connectTimeoutMs, 300, 'ConnectionTimeout is read as milliseconds');
  t.equal(api.options.tcpIdleTimeoutS, 60);
  t.equal(api.options.requestTimeoutMs, 15000, 'defaults fill the rest');
  const db = cfg.dependencies[1];
  t.equal(db.namespace, 'data', 'name.namespace names another namespace');
  t.same(db.options, defaultDependencyOptions());
  t.same(cfg.env, { LOG_LEVEL: 'debug', N: '3' });
});

t.test('limits: OPEN_LIMIT NO turns them off; LIMIT_* alone turns them on', async (t) => {
  const off = parseMeshConfig({ base_ports: [{ port: 80, options: { OPEN_LIMIT: 'NO', LIMIT_RPS: 5 } }] }, 'd', 'a');
  t.same(off.ports[0].limits, { rps: 0, burst: 0, connections: 0 });
  const on = parseMeshConfig({ base_ports: [{ port: 80, options: { LIMIT_RPS: 5 } }] }, 'd', 'a');
  t.same(on.ports[0].limits, { rps: 5, burst: 5, connections: 0 });
});

const bad: Array<[string, unknown, RegExp]> = [
  [
    'non-integer option',
    { base_services: [{ depend_service_alias: 'api', port: 8080, options: { MaxRequests: 'ten' } }] },
    /app default\/web, dependency api:8080: invalid option MaxRequests="ten": expected an integer/,
  ],
  [
    'unknown option',
    { base_services: [{ depend_service_alias: 'api', port: 8080, options: { MaxRequest: 1 } }] },
    /unknown option MaxRequest/,
  ],
  ['bad alias', { base_services: [{ depend_service_alias: 'Api_1', port: 8080 }] }, /depend_service_alias="Api_1"/],
  ['bad port', { base_services: [{ depend_service_alias: 'api', port: 70000 }] }, /invalid port=70000/],
  ['bad protocol', { base_services: [{ depend_service_alias: 'api', port: 1, protocol: 'udp' }] }, /invalid protocol "udp"/],
  [
    'prefix on tcp',
    { base_services: [{ depend_service_alias: 'api', port: 1, protocol: 'tcp', options: { Prefix: '/x' } }] },
    /tcp dependencies cannot route/,
  ],
  ['hash without header', { base_services: [{ depend_service_alias: 'api', port: 1, options: { LBPolicy: 'hash' } }] }, /needs HashHeader/],
  [
    'bad header pair',
    { base_services: [{ depend_service_alias: 'api', port: 1, options: { Headers: 'novalue' } }] },
    /header pair "novalue"/,
  ],
  ['listen port range', { base_ports: [{ port: 80, listen_port: 1000 }] }, /port 80: invalid listen_port=1000/],
  ['percent range', { base_services: [{ depend_service_alias: 'api', port: 1, options: { MaxEjectionPercent: 101 } }] }, /from 0 to 100/],
  [
    'duplicate dependency',
    {
      base_services: [
        { depend_service_alias: 'api', port: 1 },
        { depend_service_alias: 'api', port: 1 },
      ],
    },
    /listed twice/,
  ],
  ['not an object', 'nope', /must be an object/],
];
for (const [name, raw, re] of bad) {
  t.test(`refused: ${name}`, async (t) => {
    let caught: unknown;
    try {
      parseMeshConfig(raw, 'default', 'web');
    } catch (err) {
      caught = err;
    }
    t.type(caught, ConfigError);
    t.match((caught as Error | undefined)?.message, re);
  });
}

t.test('RetryNonIdempotent: YES/NO (default NO), anything else named as invalid', async (t) => {
  const dep = (options: Record<string, unknown>) =>
    parseMeshConfig({ base_services: [{ depend_service_alias: 'api', port: 80, options }] }, 'd', 'web').dependencies[0].options;
  t.equal(dep({}).retryNonIdempotent, false);
  t.equal(dep({ RetryNonIdempotent: 'YES' }).retryNonIdempotent, true);
  t.equal(dep({ RetryNonIdempotent: true }).retryNonIdempotent, true);
  t.throws(() => dep({ RetryNonIdempotent: 'sometimes' }), /invalid option RetryNonIdempotent="sometimes".*expected YES or NO/);
});
