// Finds where a chunked body ends without decoding it: the fast path forwards the framing as it is.
const SIZE = 0;
const EXT = 1;
const SIZE_LF = 2;
const DATA = 3;
const DATA_CR = 4;
const DATA_LF = 5;
const TRAILER_START = 6;
const TRAILER_LINE = 7;
const TRAILER_LF = 8;
const END_LF = 9;
const DONE = 10;

export class ChunkedScanner {
  private state = SIZE;
  private size = 0;
  private sawDigit = false;
  error = false;

  get done(): boolean {
    return this.state === DONE;
  }

  /** Scans buf[from, to); returns the index just past the body's end, or -1 if it has not ended. */
  scan(buf: Buffer, from: number, to: number): number {
    let i = from;
    while (i < to) {
      const c = buf[i];
      switch (this.state) {
        case SIZE: {
          const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (d >= 0) {
            this.size = this.size * 16 + d;
            this.sawDigit = true;
            if (this.size > Number.MAX_SAFE_INTEGER / 16) return this.fail();
          } else if (!this.sawDigit) return this.fail();
          else if (c === 13) this.state = SIZE_LF;
          else if (c === 59 || c === 32 || c === 9) this.state = EXT;
          else return this.fail();
          i++;
          break;
        }
        case EXT:
          if (c === 13) this.state = SIZE_LF;
          i++;
          break;
        case SIZE_LF:
          if (c !== 10) return this.fail();
          i++;
          this.state = this.size === 0 ? TRAILER_START : DATA;
          break;
        case DATA: {
          const n = Math.min(this.size, to - i);
          i += n;
          this.size -= n;
          if (this.size === 0) this.state = DATA_CR;
          break;
        }
        case DATA_CR:
          if (c !== 13) return this.fail();
          this.state = DATA_LF;
          i++;
          break;
        case DATA_LF:
          if (c !== 10) return this.fail();
          this.state = SIZE;
          this.sawDigit = false;
          i++;
          break;
        case TRAILER_START:
          this.state = c === 13 ? END_LF : TRAILER_LINE;
          i++;
          break;
        case TRAILER_LINE:
          if (c === 13) this.state = TRAILER_LF;
          i++;
          break;
        case TRAILER_LF:
          if (c !== 10) return this.fail();
          this.state = TRAILER_START;
          i++;
          break;
        case END_LF:
          if (c !== 10) return this.fail();
          this.state = DONE;
          return i + 1;
        default:
          return i;
      }
    }
    return -1;
  }

  private fail(): number {
    this.error = true;
    return -1;
  }
}
