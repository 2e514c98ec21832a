// Where the sidecar runs: --node and --zone, and, for a node without a zone, the zone discover reads
// from the Node's topology.kubernetes.io/zone label (GET /v2/locality/{ns}/{app}?node=NAME). The
// snapshot stays one per app: the sidecar's own place never enters it.
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { FlagValues } from '../../shared/flags.ts';
import type { Logger } from '../../shared/log.ts';
import { nodeHttp } from '../lazyBuiltins.ts';

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const ZONE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** --node and --zone (or SHOAL_NODE, SHOAL_ZONE), checked as Kubernetes checks a node name and a label value. */
export function parseLocalityFlags(values: FlagValues): { node?: string; zone?: string } {
  const out: { node?: string; zone?: string } = {};
  const node = values.node;
  const zone = values.zone;
  if (node !== undefined && node !== '') {
    if (typeof node !== 'string' || !NODE_NAME.test(node))
      throw new Error(`--node must be a node name (a lower-case DNS subdomain), got ${JSON.stringify(node)}`);
    out.node = node;
  }
  if (zone !== undefined && zone !== '') {
    if (typeof zone !== 'string' || !ZONE.test(zone))
      throw new Error(
        `--zone must be a zone name (a Kubernetes label value: letters, digits, '-', '_', '.', at most 63), got ${JSON.stringify(zone)}`,
      );
    out.zone = zone;
  }
  return out;
}

export interface ZoneLookupOptions {
  /** The sidecar's snapshot URL: http://<discover>:6100/v2/snapshot/{ns}/{app}. */
  url: string;
  node: string;
  tokenFile?: string;
  log: Logger;
  onZone(zone: string): void;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/** The locality URL beside a snapshot URL. */
export function localityUrl(snapshotUrl: string, node: string): string {
  const u = new URL(snapshotUrl);
  u.pathname = u.pathname.replace(/^\/v2\/snapshot\//, '/v2/locality/');
  u.search = `?node=${encodeURIComponent(node)}`;
  return u.toString();
}

function get(url: string, token: string, signal: AbortSignal): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token !== '') headers.authorization = `Bearer ${token}`;
    const req = nodeHttp().request(url, { headers, signal, timeout: 10_000 }, (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 65536) body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Asks discover for the node's zone until it answers (with backoff while discover or the Node is not
 * there yet); calls onZone once with a non-empty zone. Abort to stop. A discover without Node
 * information (a static topology) or a Node without the label ends the lookup: the sidecar then
 * routes by node hints only.
 */
export function lookUpZone(opts: ZoneLookupOptions): AbortController {
  const stop = new AbortController();
  const base = opts.backoffBaseMs ?? 500;
  const max = opts.backoffMaxMs ?? 30_000;
  const url = localityUrl(opts.url, opts.node);
  void (async () => {
    for (let attempt = 0; !stop.signal.aborted; attempt++) {
      try {
        let token = '';
        if (opts.tokenFile) token = readFileSync(opts.tokenFile, 'utf8').trim();
        const { status, body } = await get(url, token, stop.signal);
        let parsed: { zone?: unknown; error?: unknown; message?: unknown } = {};
        try {
          parsed = JSON.parse(body) as typeof parsed;
        } catch {
          /* not JSON: logged below */
        }
        if (status === 200 && typeof parsed.zone === 'string' && ZONE.test(parsed.zone)) {
          opts.log.info({ node: opts.node, zone: parsed.zone }, "zone from the node's topology.kubernetes.io/zone label");
          opts.onZone(parsed.zone);
          return;
        }
        if (status === 200 || (status === 404 && parsed.error === 'no_node_information')) {
          opts.log.warn(
            { node: opts.node, status, answer: body.slice(0, 200) },
            'discover knows no zone for this node; routing by node hints only (set --zone)',
          );
          return;
        }
        if (attempt === 0)
          opts.log.info({ node: opts.node, status, answer: body.slice(0, 200) }, "the node's zone is not known yet; asking again");
      } catch (err) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- aborted by stop() while this request was awaited
        if (stop.signal.aborted) return;
        if (attempt === 0)
          opts.log.info({ node: opts.node, error: (err as Error).message }, "could not ask discover for the node's zone; asking again");
      }
      const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 10));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ceiling / 2 + Math.random() * (ceiling / 2));
        timer.unref();
        stop.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
  })();
  return stop;
}
