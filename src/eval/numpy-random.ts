/**
 * The part of NumPy's legacy random generator (`numpy.random.seed` / `randint`, the
 * global RandomState) that the official passkey script uses, bit for bit: a Mersenne
 * Twister MT19937 seeded with `init_genrand(seed)`, and `randint(low, high)` — an integer
 * in [low, high) drawn by masked rejection (32-bit draws ANDed with the smallest
 * all-ones mask covering the range, redrawn while too large). With it, trial `i` of a
 * passkey ladder (seed i) has the same prefix length and pass key as the official run.
 */
import { LongLoraError } from '../errors.js';

const N = 624;
const M = 397;

/** NumPy's legacy global generator, for the draws the passkey script makes. */
export class NumpyRandomState {
  private readonly mt = new Uint32Array(N);
  private mti = N;

  /** `numpy.random.seed(seed)` for an integer seed in [0, 2^32). */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new LongLoraError(`seed must be an integer in [0, 2^32), got ${seed}`);
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = this.mt[i - 1]! ^ (this.mt[i - 1]! >>> 30);
      // 1812433253 * prev + i, modulo 2^32, without losing bits to float rounding.
      this.mt[i] = (((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253 + i) >>> 0;
    }
    this.mti = N;
  }

  /** The next 32-bit output (genrand_int32). */
  nextU32(): number {
    const mt = this.mt;
    if (this.mti >= N) {
      let kk = 0;
      const mix = (a: number, b: number): number => ((a & 0x80000000) | (b & 0x7fffffff)) >>> 0;
      for (; kk < N - M; kk++) {
        const y = mix(mt[kk]!, mt[kk + 1]!);
        mt[kk] = (mt[kk + M]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
      }
      for (; kk < N - 1; kk++) {
        const y = mix(mt[kk]!, mt[kk + 1]!);
        mt[kk] = (mt[kk + (M - N)]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
      }
      const y = mix(mt[N - 1]!, mt[0]!);
      mt[N - 1] = (mt[M - 1]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0)) >>> 0;
      this.mti = 0;
    }
    let y = mt[this.mti++]!;
    y ^= y >>> 11;
    y = (y ^ ((y << 7) & 0x9d2c5680)) >>> 0;
    y = (y ^ ((y << 15) & 0xefc60000)) >>> 0;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `randint(low, high)`: an integer in [low, high), as NumPy's legacy generator draws it. */
  randint(low: number, high: number): number {
    if (!Number.isInteger(low) || !Number.isInteger(high) || high <= low) throw new LongLoraError(`randint: need integers low < high, got ${low}, ${high}`);
    const range = high - 1 - low;
    if (range === 0) return low;
    if (range > 0xffffffff) throw new LongLoraError('randint: ranges wider than 2^32 are not implemented');
    let mask = range;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    mask >>>= 0;
    let v: number;
    do v = (this.nextU32() & mask) >>> 0; while (v > range);
    return low + v;
  }
}
