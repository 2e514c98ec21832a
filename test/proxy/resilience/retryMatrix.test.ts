// The retry rule (proxy/l7/retry.ts) as one table over every L7 path: HTTP/1.1 on the fast path
// (bodiless requests), HTTP/1.1 with a body (node:http and undici), h2c (node:http2 client) and gRPC.
// Each cell is its own dependency with two endpoints, the failing one first in round robin (endpoints
// are ordered by address: .10 fails, .20 answers), so a retry is seen as "both endpoints got the
// request and the client 200", no retry as "the failure reached the client, the second got nothing".
import { connect as h2connect, type IncomingHttpHeaders } from 'node:http2';
import t from 'tap';
import { Agent, request } from 'undici';
import { freePort, type Backend } from '../fixtures.ts';
import { depSidecar, h1Backend, h2Backend, type Behaviour, type Dep, type H2Backend } from './exitFixtures.ts';

type Column = 'h1' | 'h1+body' | 'h2c' | 'grpc';
const COLUMNS: Column[] = ['h1', 'h1+body', 'h2c', 'grpc'];
type Failure = 'connect refused' | '503 answer' | 'reset' | 'UNAVAILABLE';

/** An expected outcome, or why the protocol cannot express the case. */
type Expect = 'retried' | 'not retried' | { na: string };

interface Row {
  failure: Failure;
  method: 'GET' | 'POST';
  options: string;
  expect: Record<Column, Expect>;
}

const BODY_SENT = 'not retried';
const GRPC_POST = { na: 'gRPC calls are POSTs' };
const GRPC_ANSWER = { na: "a gRPC call's failure answer is grpc-status: see the UNAVAILABLE rows" };
const NOT_GRPC = { na: 'grpc-status UNAVAILABLE is a gRPC answer' };

// h1+body: a request whose body was sent is never replayed (node:http path), so only a connect failure
// (the body still unread) is retried there, whatever the method.
const ROWS: Row[] = [
  {
    failure: 'connect refused',
    method: 'GET',
    options: '',
    expect: { h1: 'retried', 'h1+body': 'retried', h2c: 'retried', grpc: GRPC_POST },
  },
  {
    failure: 'connect refused',
    method: 'POST',
    options: '',
    expect: { h1: 'retried', 'h1+body': 'retried', h2c: 'retried', grpc: 'retried' },
  },
  { failure: '503 answer', method: 'GET', options: '', expect: { h1: 'retried', 'h1+body': BODY_SENT, h2c: 'retried', grpc: GRPC_POST } },
  {
    failure: '503 answer',
    method: 'POST',
    options: '',
    expect: { h1: 'not retried', 'h1+body': 'not retried', h2c: 'not retried', grpc: GRPC_ANSWER },
  },
  {
    failure: '503 answer',
    method: 'POST',
    options: 'RetryNonIdempotent: YES',
    expect: { h1: 'retried', 'h1+body': BODY_SENT, h2c: 'retried', grpc: GRPC_ANSWER },
  },
  { failure: 'reset', method: 'GET', options: '', expect: { h1: 'retried', 'h1+body': BODY_SENT, h2c: 'retried', grpc: GRPC_POST } },
  {
    failure: 'reset',
    method: 'POST',
    options: '',
    expect: { h1: 'not retried', 'h1+body': 'not retried', h2c: 'not retried', grpc: 'not retried' },
  },
  {
    failure: 'reset',
    method: 'POST',
    options: 'RetryNonIdempotent: YES',
    expect: { h1: 'retried', 'h1+body': BODY_SENT, h2c: 'retried', grpc: 'retried' },
  },
  {
    failure: 'UNAVAILABLE',
    method: 'POST',
    options: '',
    expect: { h1: NOT_GRPC, 'h1+body': NOT_GRPC, h2c: NOT_GRPC, grpc: 'not retried' },
  },
  {
    failure: 'UNAVAILABLE',
    method: 'POST',
    options: 'RetryNonIdempotent: YES',
    expect: { h1: NOT_GRPC, 'h1+body': NOT_GRPC, h2c: NOT_GRPC, grpc: 'retried' },
  },
  {
    failure: 'connect refused',
    method: 'POST',
    options: 'RetryAttempts: 0',
    expect: { h1: 'not retried', 'h1+body': 'not retried', h2c: 'not retried', grpc: 'not retried' },
  },
  {
    failure: '503 answer',
    method: 'GET',
    options: 'RetryAttempts: 0',
    expect: { h1: 'not retried', 'h1+body': 'not retried', h2c: 'not retried', grpc: GRPC_POST },
  },
  {
    failure: 'UNAVAILABLE',
    method: 'POST',
    options: 'RetryNonIdempotent: YES, RetryAttempts: 0',
    expect: { h1: NOT_GRPC, 'h1+body': NOT_GRPC, h2c: NOT_GRPC, grpc: 'not retried' },
  },
  {
    failure: 'connect refused',
    method: 'POST',
    options: 'MaxActiveRetries: 0',
    expect: { h1: 'not retried', 'h1+body': 'not retried', h2c: 'not retried', grpc: 'not retried' },
  },
  {
    failure: '503 answer',
    method: 'GET',
    options: 'MaxActiveRetries: 0',
    expect: { h1: 'not retried', 'h1+body': 'not retried', h2c: 'not retried', grpc: GRPC_POST },
  },
  {
    failure: 'UNAVAILABLE',
    method: 'POST',
    options: 'RetryNonIdempotent: YES, MaxActiveRetries: 0',
    expect: { h1: NOT_GRPC, 'h1+body': NOT_GRPC, h2c: NOT_GRPC, grpc: 'not retried' },
  },
];

const BEHAVIOUR: Record<Failure, Behaviour> = { 'connect refused': 'ok', '503 answer': '503', reset: 'reset', UNAVAILABLE: 'unavailable' };

/** What one request saw: the client's status (gRPC: grpc-status) and x-shoal-error. */
interface Seen {
  status: number;
  grpcStatus: string;
  error: string;
}

async function h1Call(url: string, method: string, body: string | undefined): Promise<Seen> {
  const agent = new Agent({ connections: 1 });
  try {
    const r = await request(`${url}/`, { dispatcher: agent, method: method as 'GET', body });
    await r.body.dump();
    return { status: r.statusCode, grpcStatus: '', error: String(r.headers['x-shoal-error'] ?? '') };
  } finally {
    await agent.close();
  }
}

function h2Call(url: string, method: string, grpc: boolean): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const session = h2connect(url);
    session.on('error', reject);
    const headers: Record<string, string> = { ':method': method, ':path': grpc ? '/shoal.test.Echo/Unary' : '/' };
    if (grpc) Object.assign(headers, { 'content-type': 'application/grpc', te: 'trailers' });
    const st = session.request(headers, { endStream: method === 'GET' });
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    st.on('response', (h) => (head = h));
    st.on('trailers', (h) => (trailers = h));
    st.resume();
    st.on('error', reject);
    st.on('close', () => {
      session.close();
      resolve({
        status: Number(head[':status'] ?? 0),
        grpcStatus: String(trailers['grpc-status'] ?? head['grpc-status'] ?? ''),
        error: String(trailers['x-shoal-error'] ?? head['x-shoal-error'] ?? ''),
      });
    });
    if (method !== 'GET') st.end(grpc ? Buffer.alloc(5) : 'payload');
  });
}

interface Cell {
  row: number;
  column: Column;
  name: string;
  /** The failing endpoint (null: a closed port, nothing to count). */
  failing: Backend | H2Backend | null;
  ok: Backend | H2Backend;
}

t.test('the retry rule over HTTP/1.1 (fast path and with a body), h2c and gRPC', async (t) => {
  // Endpoints are ordered by address, and a fresh round robin starts at the first: .10 fails, .20 answers.
  const net = 1 + Math.floor(Math.random() * 200);
  const cells: Cell[] = [];
  const deps: Dep[] = [];
  for (const [i, row] of ROWS.entries()) {
    for (const [j, column] of COLUMNS.entries()) {
      if (typeof row.expect[column] === 'object') continue;
      const base = `127.${net}.${i * COLUMNS.length + j + 1}.`;
      const name = `r${i + 1}-${column === 'h1+body' ? 'h1b' : column}`;
      const h2 = column === 'h2c' || column === 'grpc';
      const make = (n: string, b: Behaviour, a: string) => (h2 ? h2Backend(t, n, b, a) : h1Backend(t, n, b, a));
      const ok = await make(`${name}-ok`, 'ok', `${base}20`);
      const failing = row.failure === 'connect refused' ? null : await make(`${name}-failing`, BEHAVIOUR[row.failure], `${base}10`);
      const failingEndpoint = failing?.endpoint ?? `${base}10:${await freePort()}`;
      cells.push({ row: i, column, name, failing, ok });
      deps.push({
        name,
        protocol: column === 'grpc' ? 'grpc' : h2 ? 'http2' : 'http',
        endpoints: [failingEndpoint, ok.endpoint],
        options: ['LBPolicy: round_robin', row.options].filter((x) => x !== '').join(', '),
      });
    }
  }
  const { at } = await depSidecar(t, deps);

  const got = new Map<string, string>();
  for (const cell of cells) {
    const row = ROWS[cell.row];
    const url = at[cell.name].url;
    const seen =
      cell.column === 'h1'
        ? await h1Call(url, row.method, undefined)
        : cell.column === 'h1+body'
          ? await h1Call(url, row.method, 'payload')
          : await h2Call(url, row.method, cell.column === 'grpc');
    const failingSaw = cell.failing?.requests ?? 1;
    const okSaw = cell.ok.requests;
    const success = cell.column === 'grpc' ? seen.status === 200 && seen.grpcStatus === '0' : seen.status === 200;
    const answer = cell.column === 'grpc' ? `grpc-status ${seen.grpcStatus || '?'}` : String(seen.status);
    const how = `${answer}${seen.error === '' ? '' : ` ${seen.error}`}`;
    let outcome: string;
    if (success && failingSaw === 1 && okSaw === 1) outcome = 'retried';
    else if (!success && failingSaw === 1 && okSaw === 0) outcome = 'not retried';
    else outcome = `unclear (failing endpoint saw ${failingSaw}, other ${okSaw})`;
    got.set(`${cell.row}/${cell.column}`, `${outcome} (${how})`);
    const expected = row.expect[cell.column] as string;
    const label = `${row.failure} ${row.method}${row.options === '' ? '' : ` {${row.options}}`} on ${cell.column}`;
    t.equal(outcome, expected, `${label}: ${expected} (client saw ${how})`);
    if (outcome === 'not retried') {
      // The failure itself reaches the client.
      if (cell.column === 'grpc') t.equal(seen.grpcStatus, '14', `${label}: UNAVAILABLE reaches the client`);
      else if (row.failure === '503 answer')
        t.same([seen.status, seen.error], [503, ''], `${label}: the endpoint's own 503 reaches the client`);
      else if (row.failure === 'reset') t.same([seen.status, seen.error], [502, 'upstream-reset'], `${label}: 502 upstream-reset`);
      else t.ok(seen.status >= 500 && seen.error !== '', `${label}: a made-up ${seen.status} ${seen.error}`);
    }
  }

  // The matrix, as run: expected → what happened.
  const cellText = (i: number, c: Column) => {
    const e = ROWS[i].expect[c];
    if (typeof e === 'object') return `n/a: ${e.na}`;
    const g = got.get(`${i}/${c}`) ?? '?';
    return g.startsWith(e) ? g : `FAIL expected ${e}, got ${g}`;
  };
  const lines = [
    `| case | ${COLUMNS.join(' | ')} |`,
    `|---|${COLUMNS.map(() => '---').join('|')}|`,
    ...ROWS.map(
      (r, i) =>
        `| ${r.failure} ${r.method}${r.options === '' ? '' : ` {${r.options}}`} | ${COLUMNS.map((c) => cellText(i, c)).join(' | ')} |`,
    ),
  ];
  t.comment(`\n${lines.join('\n')}`);
});
