/**
 * The allocator of the wasm backend: places buffers inside the one shared
 * WebAssembly.Memory, from `base` (above the module's static data) up to `top`, growing
 * the memory when a request does not fit.
 *
 * Blocks are 64-byte aligned and their sizes rounded up to 64 bytes (a cache line), so
 * every vector kernel may run its last f32x4 past a buffer's last element without
 * touching a neighbour. Free blocks are kept twice: in address order, to coalesce a freed
 * block with free neighbours, and in size classes (exact classes of 64 bytes up to 4 KiB,
 * then four classes per power of two), to find a block that fits quickly. A free block
 * that ends at `top` is given back to the top, so a program that frees everything returns
 * to an empty heap. Memory is never shrunk: WebAssembly memories only grow.
 */
import { LongLoraError } from '../../errors.js';
import type { WasmMemory } from './wasm-api.js';

export const ALIGN = 64;
const PAGE = 65536;
/** WebAssembly (32-bit) memories hold at most 65536 pages of 64 KiB. */
export const MAX_PAGES = 65536;
const SMALL_UNITS = 64; // exact classes for blocks up to 64 · 64 B = 4 KiB

const mib = (b: number): string => (b / 2 ** 20).toFixed(1);

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Size class of a block of `bytes` (a multiple of 64). */
function classOf(bytes: number): number {
  const units = bytes / ALIGN;
  if (units <= SMALL_UNITS) return units;
  const e = Math.floor(Math.log2(units));
  const quarter = Math.floor((units - 2 ** e) / 2 ** (e - 2)); // 0..3 within the power of two
  return SMALL_UNITS + (e - 6) * 4 + quarter + 1;
}

export class WasmAllocator {
  private top: number;
  /** First block address: base rounded up to the alignment. */
  private readonly start: number;
  /** Free blocks: addresses in ascending order, and sizes. */
  private freeAddrs: number[] = [];
  private freeSize = new Map<number, number>();
  /** Free block addresses by size class. */
  private bins = new Map<number, Set<number>>();
  /** Live blocks: address → size. */
  private used = new Map<number, number>();
  private usedBytes = 0;

  /**
   * Manages [base, ∞) of `memory`; `onGrow` runs after every memory.grow (the host
   * refreshes its typed-array views there).
   */
  constructor(private readonly memory: WasmMemory, readonly base: number, private readonly onGrow: () => void) {
    this.start = roundUp(base, ALIGN);
    this.top = this.start;
  }

  /** Bytes in live blocks (rounded sizes). */
  get liveBytes(): number { return this.usedBytes; }
  /** Bytes of the heap between base and top (live + free). */
  get heapBytes(): number { return this.top - this.start; }
  /** Size of the WebAssembly memory. */
  get memoryBytes(): number { return this.memory.buffer.byteLength; }
  get freeBlocks(): number { return this.freeAddrs.length; }

  /** Address of a new block of at least `bytes` bytes (0 bytes still get a block). */
  alloc(bytes: number): number {
    const size = roundUp(Math.max(bytes, 1), ALIGN);
    const addr = this.takeFree(size) ?? this.takeTop(size, bytes);
    this.used.set(addr, size);
    this.usedBytes += size;
    return addr;
  }

  free(addr: number): void {
    const size = this.used.get(addr);
    if (size === undefined) throw new LongLoraError(`wasm allocator: free of an unknown block at ${addr}`);
    this.used.delete(addr);
    this.usedBytes -= size;
    let start = addr;
    let end = addr + size;
    // coalesce with the free neighbours
    const i = this.lowerBound(addr);
    const prev = this.freeAddrs[i - 1];
    if (prev !== undefined && prev + this.freeSize.get(prev)! === start) {
      start = prev;
      this.removeFree(prev);
    }
    const next = this.freeAddrs[this.lowerBound(end)];
    if (next === end) {
      end += this.freeSize.get(next)!;
      this.removeFree(next);
    }
    if (end === this.top) this.top = start; // back to the wilderness
    else this.addFree(start, end - start);
  }

  /** Size of the live block at addr (for checks). */
  sizeOf(addr: number): number | undefined {
    return this.used.get(addr);
  }

  private takeFree(size: number): number | null {
    const maxClass = classOf(Math.max(size, this.largestFreeGuess()));
    for (let c = classOf(size); c <= maxClass; c++) {
      const bin = this.bins.get(c);
      if (!bin) continue;
      let best = -1;
      let bestSize = Infinity;
      for (const a of bin) {
        const s = this.freeSize.get(a)!;
        if (s >= size && s < bestSize) { best = a; bestSize = s; if (s === size) break; }
      }
      if (best < 0) continue;
      this.removeFree(best);
      if (bestSize > size) this.addFree(best + size, bestSize - size);
      return best;
    }
    return null;
  }

  /** An upper bound of the largest free block's class search (the heap size). */
  private largestFreeGuess(): number {
    return this.top - this.start;
  }

  private takeTop(size: number, requested: number): number {
    // A free block that ends at the top cannot exist (free() gives it back), so the new
    // block starts at the top.
    const addr = this.top;
    const end = addr + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const needPages = Math.ceil((end - have) / PAGE);
      const curPages = have / PAGE;
      const pages = Math.min(Math.max(needPages, Math.ceil(curPages / 8)), MAX_PAGES - curPages);
      if (pages < needPages) throw this.outOfMemory(requested);
      try {
        this.memory.grow(pages);
      } catch {
        try { this.memory.grow(needPages); } catch { throw this.outOfMemory(requested); }
      }
      this.onGrow();
    }
    this.top = end;
    return addr;
  }

  private outOfMemory(requested: number): LongLoraError {
    return new LongLoraError(
      `wasm backend: cannot allocate ${mib(requested)} MiB: ${mib(this.usedBytes)} MiB are in use and a WebAssembly ` +
      `memory holds at most 4 GiB (${MAX_PAGES} pages of 64 KiB). Use a shorter sequence or a smaller batch, ` +
      'turn on activation checkpointing, keep the model\'s weights in 16 bits (--dtype bf16; dtype: \'bf16\' in the library) or its ' +
      'linear layers in 4 bits (--quantize nf4; quantize: \'nf4\'), or use the cpu backend.');
  }

  private lowerBound(addr: number): number {
    let lo = 0;
    let hi = this.freeAddrs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.freeAddrs[mid]! < addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private addFree(addr: number, size: number): void {
    this.freeAddrs.splice(this.lowerBound(addr), 0, addr);
    this.freeSize.set(addr, size);
    const c = classOf(size);
    let bin = this.bins.get(c);
    if (!bin) { bin = new Set(); this.bins.set(c, bin); }
    bin.add(addr);
  }

  private removeFree(addr: number): void {
    const size = this.freeSize.get(addr)!;
    this.freeAddrs.splice(this.lowerBound(addr), 1);
    this.freeSize.delete(addr);
    const c = classOf(size);
    const bin = this.bins.get(c)!;
    bin.delete(addr);
    if (bin.size === 0) this.bins.delete(c);
  }
}
