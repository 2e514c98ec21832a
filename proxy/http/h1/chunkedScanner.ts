// Finds where a chunked body ends without decoding it: the fast path forwards the framing as it is,
// so it checks that framing as strictly as llhttp (strict) decodes it: CRLF everywhere, chunk
// extensions as RFC 9112 7.1.1 has them (token names, token or quoted-string values), trailer
// fields as header fields, and the same 16 KiB bounds node:http puts on extensions and trailers.
// Refused although llhttp accepts them: chunk sizes over 2^53 - 1, Transfer-Encoding as a trailer
// field (framing fields have no meaning there, RFC 9110 6.5.1), and extensions or trailer sections
// within a few bytes of node's bounds (counted here with their delimiters).
import { FIELD, TOKEN } from './responseHead.ts';

const SIZE_START = 0;
const SIZE = 1;
const EXT = 2;
const EXT_NAME = 3;
const EXT_VALUE = 4;
const EXT_QUOTED = 5;
const EXT_QUOTED_PAIR = 6;
const EXT_QUOTED_DONE = 7;
const SIZE_LF = 8;
const DATA = 9;
const DATA_CR = 10;
const DATA_LF = 11;
const TRAILER_START = 12;
const TRAILER_NAME = 13;
const TRAILER_VALUE = 14;
const TRAILER_LF = 15;
const END_LF = 16;
const DONE = 17;

/** Bytes of one chunk's extensions (from the first ';') and of the trailer section; node allows 16 KiB of each. */
const MAX_EXTENSIONS = 16 * 1024 - 1;
const MAX_TRAILERS = 16 * 1024 - 1;

// quoted-string text (RFC 9110 5.6.4): HTAB, SP, VCHAR except '"' and '\', obs-text.
const QDTEXT = new Uint8Array(256);
for (let c = 0; c < 256; c++) if (FIELD[c] === 1 && c !== 0x22 && c !== 0x5c) QDTEXT[c] = 1;

function hex(c: number): number {
  return c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
}

// Trailer names of note, matched as they are read (one bit per name still possible): the framing
// fields are refused; Connection is let through, and (as llhttp reads it, on both sides) neither the
// upstream nor the client connection is used again.
const NOTED = ['content-length', 'transfer-encoding', 'connection'];
const CONNECTION = 2;

export class ChunkedScanner {
  private state = SIZE_START;
  private size = 0;
  private count = 0;
  private noted = 0;
  private nameLen = 0;
  /** Why the body was refused; '' while it is fine. */
  error = '';
  /** A trailer field named Connection was read: close both connections after this response. */
  close = false;

  get done(): boolean {
    return this.state === DONE;
  }

  /** Scans buf[from, to); returns the index just past the body's end, or -1 if it has not ended (or error is set). */
  scan(buf: Buffer, from: number, to: number): number {
    let i = from;
    while (i < to) {
      const c = buf[i];
      switch (this.state) {
        case SIZE_START: {
          const d = hex(c);
          if (d < 0) return this.fail('invalid character in a chunk size');
          this.size = d;
          this.state = SIZE;
          break;
        }
        case SIZE: {
          const d = hex(c);
          if (d >= 0) {
            this.size = this.size * 16 + d;
            if (this.size > Number.MAX_SAFE_INTEGER) return this.fail('chunk size over 2^53 - 1');
          } else if (c === 13) this.state = SIZE_LF;
          else if (c === 0x3b) {
            this.count = 1;
            this.state = EXT;
          } else return this.fail('invalid character in a chunk size');
          break;
        }
        case EXT:
          // After ';': a name (possibly empty before '=' or ';', as llhttp has it), never SP or CR.
          if (c === 32 || c === 13) return this.fail('invalid character in chunk extensions');
          this.state = EXT_NAME;
          continue;
        case EXT_NAME:
          if (TOKEN[c] === 1) break;
          if (c === 0x3d) this.state = EXT_VALUE;
          else if (c === 0x3b) this.state = EXT;
          else if (c === 13) this.state = SIZE_LF;
          else return this.fail('invalid character in a chunk extension name');
          break;
        case EXT_VALUE:
          if (TOKEN[c] === 1) break;
          if (c === 0x22) this.state = EXT_QUOTED;
          else if (c === 0x3b) this.state = EXT;
          else if (c === 13) this.state = SIZE_LF;
          else return this.fail('invalid character in a chunk extension value');
          break;
        case EXT_QUOTED:
          if (QDTEXT[c] === 1) break;
          if (c === 0x22) this.state = EXT_QUOTED_DONE;
          else if (c === 0x5c) this.state = EXT_QUOTED_PAIR;
          else return this.fail('invalid character in a quoted chunk extension value');
          break;
        case EXT_QUOTED_PAIR:
          if (FIELD[c] !== 1) return this.fail('invalid quoted-pair in a chunk extension value');
          this.state = EXT_QUOTED;
          break;
        case EXT_QUOTED_DONE:
          if (c === 0x3b) this.state = EXT;
          else if (c === 13) this.state = SIZE_LF;
          else return this.fail('invalid character after a quoted chunk extension value');
          break;
        case SIZE_LF:
          if (c !== 10) return this.fail('CR without LF after a chunk size');
          this.state = this.size === 0 ? TRAILER_START : DATA;
          this.count = 0;
          break;
        case DATA: {
          const n = Math.min(this.size, to - i);
          i += n;
          this.size -= n;
          if (this.size === 0) this.state = DATA_CR;
          continue;
        }
        case DATA_CR:
          if (c !== 13) return this.fail('chunk data longer than its size');
          this.state = DATA_LF;
          break;
        case DATA_LF:
          if (c !== 10) return this.fail('CR without LF after chunk data');
          this.state = SIZE_START;
          break;
        case TRAILER_START:
          if (c === 13) this.state = END_LF;
          else if (TOKEN[c] === 1) {
            this.state = TRAILER_NAME;
            this.noted = (1 << NOTED.length) - 1;
            this.nameLen = 0;
            continue;
          } else return this.fail('invalid trailer field line');
          break;
        case TRAILER_NAME:
          if (TOKEN[c] === 1) {
            const l = c | 0x20;
            for (let b = 0; b < NOTED.length; b++) if (NOTED[b].charCodeAt(this.nameLen) !== l) this.noted &= ~(1 << b);
            this.nameLen++;
          } else if (c === 0x3a) {
            for (let b = 0; b < NOTED.length; b++) {
              if ((this.noted & (1 << b)) === 0 || NOTED[b].length !== this.nameLen) continue;
              if (b === CONNECTION) this.close = true;
              else return this.fail(`${NOTED[b]} as a trailer field`);
            }
            this.state = TRAILER_VALUE;
          } else return this.fail('invalid character in a trailer field name');
          break;
        case TRAILER_VALUE:
          if (FIELD[c] === 1) break;
          if (c !== 13) return this.fail('invalid character in a trailer field value');
          this.state = TRAILER_LF;
          break;
        case TRAILER_LF:
          if (c !== 10) return this.fail('CR without LF in the trailer section');
          this.state = TRAILER_START;
          break;
        case END_LF:
          if (c !== 10) return this.fail('CR without LF at the end of the chunked body');
          this.state = DONE;
          return i + 1;
        default:
          return i;
      }
      i++;
      // Extensions (from ';' to CR) and the trailer section are bounded; nothing else counts.
      if (this.state >= EXT && this.state <= EXT_QUOTED_DONE) {
        if (++this.count > MAX_EXTENSIONS) return this.fail('chunk extensions over 16 KiB');
      } else if (this.state >= TRAILER_NAME && this.state <= TRAILER_LF) {
        if (++this.count > MAX_TRAILERS) return this.fail('trailer section over 16 KiB');
      }
    }
    return -1;
  }

  private fail(reason: string): number {
    this.error = reason;
    return -1;
  }
}
