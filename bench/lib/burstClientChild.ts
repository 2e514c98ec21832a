// The client of the circuit-refusal scenario, in its own process so the proxy under test has its
// core to itself: holds `hold` slow requests open (filling the proxy's limit), then sends `burst`
// requests at once over warm connections, one write each in a tight loop, and times each from its
// own write to the first byte of its answer. argv[2]: {"url","hold","burst","rounds"}. Prints one
// JSON line: {"cold":{...},"rounds":[{"times":[ms...],"statuses":[...]}, ...]}, where cold is an
// extra first burst (the proxy's refusal path not yet compiled), kept apart from the measured ones.
import { connect, type Socket } from 'node:net';

interface Job {
  url: string;
  hold: number;
  burst: number;
  rounds: number;
}
const job = JSON.parse(process.argv[2]) as Job;
const target = new URL(job.url);

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const so = connect(Number(target.port), target.hostname, () => resolve(so));
    so.setNoDelay(true);
    so.once('error', reject);
  });
}

/** One request on a socket; resolves with the status line's code when the head arrives. */
function once(so: Socket, path: string): Promise<number> {
  return new Promise((resolve) => {
    so.once('data', (chunk: Buffer) => resolve(Number(chunk.toString('latin1', 9, 12))));
    so.write(`GET ${path} HTTP/1.1\r\nhost: ${target.host}\r\n\r\n`);
  });
}

const rounds: { times: number[]; statuses: number[] }[] = [];
for (let r = 0; r <= job.rounds; r++) {
  const burst = await Promise.all(Array.from({ length: job.burst }, open));
  // Warm: every burst connection has carried one request, so the proxy has it parsed and idle.
  for (const so of burst) await once(so, '/warm');
  const holders = await Promise.all(Array.from({ length: job.hold }, open));
  const held = holders.map((so) => once(so, '/hold'));
  await new Promise((r) => setTimeout(r, 300)); // the holders reach the backend
  const times = new Array<number>(burst.length).fill(NaN);
  const statuses = new Array<number>(burst.length).fill(0);
  await new Promise<void>((resolve) => {
    let left = burst.length;
    burst.forEach((so, i) => {
      const sent = performance.now();
      so.once('data', (chunk: Buffer) => {
        times[i] = performance.now() - sent;
        statuses[i] = Number(chunk.toString('latin1', 9, 12));
        if (--left === 0) resolve();
      });
      so.write(`GET /hold HTTP/1.1\r\nhost: ${target.host}\r\n\r\n`);
    });
  });
  rounds.push({ times, statuses });
  for (const so of burst) so.destroy();
  for (const so of holders) so.destroy();
  await Promise.race([Promise.all(held), new Promise((r) => setTimeout(r, 50))]);
}
const [cold, ...measured] = rounds;
process.stdout.write(`${JSON.stringify({ cold, rounds: measured })}\n`);
