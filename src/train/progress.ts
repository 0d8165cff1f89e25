/**
 * Progress reporting for long work: a one-line bar redrawn in place on a terminal, or a
 * plain line every few seconds when output goes to a file or pipe.
 */
import { formatDuration } from '../util/text.js';

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

export class ProgressBar {
  private readonly start = performance.now();
  private lastPrint = 0;
  private startDone: number;

  /**
   * @param total units of work
   * @param label what is being counted, e.g. 'step'
   * @param done units already done (a resumed run), not counted in the rate
   */
  constructor(readonly total: number, readonly label: string, done = 0, private readonly out: ProgressStream = process.stderr, private readonly intervalMs = 5000) {
    this.startDone = done;
  }

  /** Seconds since the bar started. */
  elapsed(): number {
    return (performance.now() - this.start) / 1000;
  }

  /** Estimated seconds left, from the rate since the start. */
  eta(done: number): number {
    const rate = (done - this.startDone) / Math.max(this.elapsed(), 1e-9);
    return rate > 0 ? (this.total - done) / rate : Infinity;
  }

  /** Shows `done` of total with extra fields (e.g. loss, lr, tok/s). */
  update(done: number, fields: Record<string, string> = {}): void {
    const extra = Object.entries(fields).map(([k, v]) => `${k} ${v}`).join('  ');
    const head = `${this.label} ${done}/${this.total}`;
    const tail = `${extra}  ${formatDuration(this.elapsed())} elapsed, ETA ${formatDuration(this.eta(done))}`;
    if (this.out.isTTY) {
      const width = Math.max(10, Math.min(30, (this.out.columns ?? 100) - head.length - tail.length - 6));
      const filled = Math.round((width * done) / this.total);
      const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
      this.out.write(`\r\x1b[2K${head} ${bar} ${tail}`);
      if (done >= this.total) this.out.write('\n');
      return;
    }
    const now = performance.now();
    if (done >= this.total || now - this.lastPrint >= this.intervalMs || this.lastPrint === 0) {
      this.lastPrint = now;
      this.out.write(`${head}  ${tail}\n`);
    }
  }

  /** Prints a message above the bar. */
  log(line: string): void {
    this.out.write(this.out.isTTY ? `\r\x1b[2K${line}\n` : `${line}\n`);
  }
}
