// Child process of test/lib/llhttp.ts (run with --expose-internals): parses each case with Node's
// llhttp binding exactly as node:http sets it up, and writes what it saw as one JSON line per batch.
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import type { LlMessage, LlResult, ParseCase } from './llhttp.ts';

const require = createRequire(import.meta.url);
const { internalBinding } = require('internal/test/binding');
const { HTTPParser, allMethods } = internalBinding('http_parser');

const MAX_HEADER_SIZE = 16 * 1024; // node:http's default (--max-http-header-size)
const LENIENT_NONE = 0;

function parseOne(c: ParseCase): LlResult {
  const messages: LlMessage[] = [];
  let partialHeaders: string[] = [];
  let partialUrl = '';
  const parser = new HTTPParser();
  parser.initialize(c.mode === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, MAX_HEADER_SIZE, LENIENT_NONE);
  parser[HTTPParser.kOnMessageBegin] = () => {};
  // Over 32 header pairs llhttp's binding flushes them early: collected as node:http does.
  parser[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
    partialHeaders.push(...headers);
    partialUrl += url;
  };
  parser[HTTPParser.kOnHeadersComplete] = (
    versionMajor: number,
    versionMinor: number,
    headers: string[] | undefined,
    method: number | undefined,
    url: string | undefined,
    statusCode: number | undefined,
    statusMessage: string | undefined,
    upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number => {
    const m: LlMessage = {
      versionMajor,
      versionMinor,
      headers: headers === undefined ? partialHeaders : [...partialHeaders, ...headers],
      upgrade,
      shouldKeepAlive,
      body: '',
      complete: false,
    };
    partialHeaders = [];
    if (c.mode === 'request') {
      m.method = typeof method === 'number' ? allMethods[method] : String(method);
      m.url = url || partialUrl;
    } else {
      m.statusCode = statusCode;
      m.statusMessage = statusMessage;
    }
    partialUrl = '';
    messages.push(m);
    // node:http's client: 1 = this response has no body (HEAD); a request's upgrade is node:http's business.
    if (c.mode === 'response' && c.requestMethod === 'HEAD') return 1;
    return 0;
  };
  parser[HTTPParser.kOnBody] = (b: Buffer) => {
    const m = messages[messages.length - 1];
    if (m) m.body += b.toString('latin1');
  };
  parser[HTTPParser.kOnMessageComplete] = () => {
    const m = messages[messages.length - 1];
    if (m) m.complete = true;
  };
  parser[HTTPParser.kOnExecute] = () => {};
  const data = Buffer.from(c.data, 'latin1');
  const r = parser.execute(data);
  let error: string | null = null;
  let reason: string | null = null;
  let bytesParsed = data.length;
  if (r instanceof Error) {
    const e = r as Error & { code?: string; reason?: string; bytesParsed?: number };
    error = e.code ?? 'HPE_UNKNOWN';
    reason = e.reason ?? e.message;
    bytesParsed = e.bytesParsed ?? 0;
  } else if (typeof r === 'number') bytesParsed = r;
  let finishError: string | null = null;
  if (error === null) {
    const f = parser.finish();
    if (f instanceof Error) finishError = (f as Error & { code?: string }).code ?? 'HPE_UNKNOWN';
    else {
      // A body that runs until close ends here.
      const m = messages[messages.length - 1];
      if (m && !m.complete && c.mode === 'response') m.complete = true;
    }
  }
  parser.close?.();
  return { messages, error, reason, bytesParsed, finishError };
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const cases = JSON.parse(line) as ParseCase[];
  process.stdout.write(`${JSON.stringify(cases.map(parseOne))}\n`);
});
