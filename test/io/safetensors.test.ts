import { describe, it, before, after, mock } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bf16BitsToF32, f32ToBf16Bits } from '../../src/tensor/dtype.js';
import { SafetensorsFile, writeSafetensors, type TensorEntry } from '../../src/io/safetensors.js';
import { throwsLL } from '../helpers/errors.js';

let dir = '';
before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'longlora-st-')); });
after(() => { fs.rmSync(dir, { recursive: true, force: true }); });

/** Writes a hand-made safetensors file: u64 length (or `len`), header text, data bytes. */
function craft(name: string, header: unknown, data: number | Uint8Array, len?: bigint): string {
  const file = path.join(dir, name);
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(text);
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + body.length);
  new DataView(out.buffer).setBigUint64(0, len ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(body, 8 + h.length);
  fs.writeFileSync(file, out);
  return file;
}

const f32 = (shape: number[], data: number[]): TensorEntry => ({ name: '', dtype: 'f32', shape, data: Float32Array.from(data) });

describe('safetensors round trip', () => {
  it('round-trips every dtype, a 0-sized tensor and a scalar', () => {
    const file = path.join(dir, 'all.safetensors');
    const f16bits = Uint16Array.from([0x0000, 0x8000, 0x3c00, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x7bff]);
    const bf16bits = Uint16Array.from([0x3f80, 0xbf80, 0x7f80, 0x7fc0, 0x0001, 0x4049]);
    const entries: TensorEntry[] = [
      { name: 'f32', dtype: 'f32', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, NaN, Infinity, -0]) },
      { name: 'f64', dtype: 'f64', shape: [2], data: Float64Array.from([Math.PI, -1e300]) },
      { name: 'f16', dtype: 'f16', shape: [8], data: f16bits },
      { name: 'bf16', dtype: 'bf16', shape: [2, 3], data: bf16bits },
      { name: 'i32', dtype: 'i32', shape: [3], data: Int32Array.from([-2147483648, 0, 2147483647]) },
      { name: 'u8', dtype: 'u8', shape: [4], data: Uint8Array.from([0, 1, 128, 255]) },
      { name: 'i64_from_i32', dtype: 'I64', shape: [4], data: Int32Array.from([-1, 0, 5, -2147483648]) },
      { name: 'i64_from_big', dtype: 'I64', shape: [2], data: BigInt64Array.from([7n, -9n]) },
      { name: 'i16', dtype: 'I16', shape: [2], data: Int16Array.from([-32768, 32767]) },
      { name: 'i8', dtype: 'I8', shape: [2], data: Int8Array.from([-128, 127]) },
      { name: 'bool', dtype: 'BOOL', shape: [3], data: Uint8Array.from([1, 0, 1]) },
      { name: 'empty', dtype: 'f32', shape: [0, 3], data: new Float32Array(0) },
      { name: 'scalar', dtype: 'f32', shape: [], data: Float32Array.from([42]) },
    ];
    writeSafetensors(file, entries);
    const st = SafetensorsFile.open(file);
    try {
      assert.deepEqual(st.names(), entries.map((e) => e.name));
      const expect: Record<string, [string, string, ArrayLike<number>]> = {
        f32: ['F32', 'f32', [1, -2, 3.5, NaN, Infinity, -0]], f64: ['F64', 'f64', [Math.PI, -1e300]],
        f16: ['F16', 'f16', f16bits], bf16: ['BF16', 'bf16', bf16bits],
        i32: ['I32', 'i32', [-2147483648, 0, 2147483647]], u8: ['U8', 'u8', [0, 1, 128, 255]],
        i64_from_i32: ['I64', 'i32', [-1, 0, 5, -2147483648]], i64_from_big: ['I64', 'i32', [7, -9]],
        i16: ['I16', 'i32', [-32768, 32767]], i8: ['I8', 'i32', [-128, 127]], bool: ['BOOL', 'u8', [1, 0, 1]],
        empty: ['F32', 'f32', []], scalar: ['F32', 'f32', [42]],
      };
      for (const e of entries) {
        const [stDtype, dtype, values] = expect[e.name]!;
        const t = st.read(e.name);
        assert.equal(st.info(e.name).dtype, stDtype, e.name);
        assert.equal(t.dtype, dtype, e.name);
        assert.deepEqual(t.shape, [...e.shape], e.name);
        assert.deepEqual(Array.from(t.data), Array.from(values), e.name);
      }
      assert.equal(st.read('f32').data[5], -0);
      assert.ok(Object.is(st.read('f32').data[5], -0), 'negative zero survives');
    } finally {
      st.close();
    }
  });

  it('handles awkward tensor names ("__proto__", unicode, numeric)', () => {
    const file = path.join(dir, 'names2.safetensors');
    const names = ['__proto__', 'poids.é✓', 'constructor'];
    writeSafetensors(file, names.map((name, i) => ({ ...f32([1], [i]), name })));
    const st = SafetensorsFile.open(file);
    assert.deepEqual(st.names(), names);
    names.forEach((n, i) => assert.deepEqual(Array.from(st.read(n).data), [i]));
    assert.equal(st.has('toString'), false);
    st.close();
  });

  it('writes I64 little-endian with sign extension', () => {
    const file = path.join(dir, 'i64.safetensors');
    writeSafetensors(file, [{ name: 'ids', dtype: 'I64', shape: [2], data: Int32Array.from([-2, 3]) }]);
    const st = SafetensorsFile.open(file);
    const raw = st.readRaw('ids');
    st.close();
    assert.deepEqual(Array.from(new BigInt64Array(raw.buffer)), [-2n, 3n]);
  });

  it('round-trips metadata; no metadata reads as {}', () => {
    const a = path.join(dir, 'meta.safetensors');
    writeSafetensors(a, [{ ...f32([1], [1]), name: 'x' }], { format: 'pt', note: 'ünïcode ✓' });
    const st = SafetensorsFile.open(a);
    assert.deepEqual(st.metadata, { format: 'pt', note: 'ünïcode ✓' });
    st.close();
    const b = path.join(dir, 'nometa.safetensors');
    writeSafetensors(b, [{ ...f32([1], [1]), name: 'x' }]);
    const st2 = SafetensorsFile.open(b);
    assert.deepEqual(st2.metadata, {});
    st2.close();
  });

  it('matches the reference byte layout and pads the header with spaces to 8 bytes', () => {
    const file = path.join(dir, 'golden.safetensors');
    writeSafetensors(file, [{ name: 'test', dtype: 'i32', shape: [2, 2], data: Int32Array.from([1, 2, 3, 4]) }]);
    const bytes = fs.readFileSync(file);
    // From huggingface/safetensors bindings/python/tests/test_simple.py (serialize of an int32 [2,2]).
    const header = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}    ';
    assert.equal(bytes.readBigUInt64LE(0), 64n);
    assert.equal(bytes.subarray(8, 72).toString('utf8'), header);
    assert.deepEqual(Array.from(new Int32Array(bytes.buffer.slice(bytes.byteOffset + 72, bytes.byteOffset + 88))), [1, 2, 3, 4]);
    assert.equal(bytes.length, 88);
  });

  it('aligns every tensor to its item size in the file', () => {
    const file = path.join(dir, 'align.safetensors');
    writeSafetensors(file, [
      { name: 'a', dtype: 'u8', shape: [3], data: new Uint8Array(3) },
      { name: 'b', dtype: 'f16', shape: [1], data: new Uint16Array(1) },
      { name: 'c', dtype: 'f32', shape: [3], data: new Float32Array(3) },
      { name: 'd', dtype: 'f64', shape: [1], data: new Float64Array(1) },
    ], { k: 'abc' });
    const st = SafetensorsFile.open(file);
    const headerLen = Number(fs.readFileSync(file).readBigUInt64LE(0));
    assert.equal(headerLen % 8, 0);
    for (const [n, size] of [['a', 1], ['b', 2], ['c', 4], ['d', 8]] as const) {
      assert.equal(st.info(n).offset % size, 0, n);
    }
    st.close();
  });

  it('converts floats on read: BF16 → f32, f32 → bf16, f16 → f64', () => {
    const file = path.join(dir, 'conv.safetensors');
    const vals = [1.5, -0.1, 3e38, 1e-40];
    writeSafetensors(file, [
      { name: 'b', dtype: 'bf16', shape: [4], data: Uint16Array.from(vals.map(f32ToBf16Bits)) },
      { name: 'f', dtype: 'f32', shape: [4], data: Float32Array.from(vals) },
      { name: 'h', dtype: 'f16', shape: [2], data: Uint16Array.from([0x3c00, 0xc000]) },
      { name: 'u', dtype: 'u8', shape: [2], data: Uint8Array.from([3, 250]) },
    ]);
    const st = SafetensorsFile.open(file);
    const b = st.read('b', 'f32');
    assert.ok(b.data instanceof Float32Array);
    assert.deepEqual(Array.from(b.data), vals.map((v) => bf16BitsToF32(f32ToBf16Bits(v))));
    assert.deepEqual(Array.from(st.read('f', 'bf16').data), vals.map(f32ToBf16Bits));
    assert.deepEqual(Array.from(st.read('h', 'f64').data), [1, -2]);
    assert.deepEqual(Array.from(st.read('u', 'i32').data), [3, 250]);
    assert.deepEqual(Array.from(st.read('u', 'f32').data), [3, 250]);
    throwsLL(() => st.read('f', 'i32'), 'conv.safetensors', '"f"', 'F32', 'i32');
    st.close();
  });

  it('rejects an I64 value that does not fit in i32, naming tensor and index', () => {
    const file = path.join(dir, 'big64.safetensors');
    writeSafetensors(file, [{ name: 'pos', dtype: 'I64', shape: [3], data: BigInt64Array.from([1n, 2n, 1n << 40n]) }]);
    const st = SafetensorsFile.open(file);
    throwsLL(() => st.read('pos'), 'big64.safetensors', '"pos"', String(1n << 40n), 'index 2');
    st.close();
  });
});

describe('safetensors reads lazily', () => {
  it('reads only the header at open and one tensor with one positioned read', () => {
    const file = path.join(dir, 'lazy.safetensors');
    const big = new Float32Array(1 << 20); // 4 MiB
    writeSafetensors(file, [
      { name: 'big', dtype: 'f32', shape: [big.length], data: big },
      { name: 'small', dtype: 'f32', shape: [4], data: Float32Array.from([1, 2, 3, 4]) },
    ]);
    const spy = mock.method(fs, 'readSync');
    try {
      const st = SafetensorsFile.open(file);
      const headerBytes = spy.mock.calls.reduce((a, c) => a + (c.result as number), 0);
      assert.equal(spy.mock.callCount(), 2, 'length + header');
      assert.ok(headerBytes < 300, `open read ${headerBytes} bytes`);
      spy.mock.resetCalls();
      assert.deepEqual(Array.from(st.read('small').data), [1, 2, 3, 4]);
      assert.equal(spy.mock.callCount(), 1);
      assert.equal(spy.mock.calls[0]!.result, 16);
      st.close();
    } finally {
      spy.mock.restore();
    }
  });
});

describe('safetensors rejects bad files', () => {
  const good = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('accepts the well-formed crafted file used below', () => {
    SafetensorsFile.open(craft('good.safetensors', good, 8)).close();
  });
  it('file shorter than 8 bytes', () => {
    const file = path.join(dir, 'tiny.safetensors');
    fs.writeFileSync(file, Uint8Array.from([1, 2, 3]));
    throwsLL(() => SafetensorsFile.open(file), 'tiny.safetensors', '3 bytes', 're-download');
  });
  it('header length larger than the file', () => {
    throwsLL(() => SafetensorsFile.open(craft('hlen.safetensors', good, 8, 1000n)), 'hlen.safetensors', '1000', 'truncated');
  });
  it('header length over the 100 MB bound', () => {
    throwsLL(() => SafetensorsFile.open(craft('hhuge.safetensors', good, 8, 1n << 40n)), 'hhuge.safetensors', '100000000');
  });
  it('invalid JSON header', () => {
    throwsLL(() => SafetensorsFile.open(craft('badjson.safetensors', '{"a": {', 8)), 'badjson.safetensors', 'not valid JSON');
  });
  it('header that is not an object, and invalid UTF-8', () => {
    throwsLL(() => SafetensorsFile.open(craft('arr.safetensors', '[1,2]', 0)), 'arr.safetensors', 'not an object');
    const bad = craft('utf8.safetensors', 'xx', 0);
    const bytes = fs.readFileSync(bad);
    bytes[8] = 0xff;
    fs.writeFileSync(bad, bytes);
    throwsLL(() => SafetensorsFile.open(bad), 'utf8.safetensors', 'UTF-8');
  });
  it('unknown dtype lists the supported dtypes', () => {
    const h = { w: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } };
    throwsLL(() => SafetensorsFile.open(craft('dtype.safetensors', h, 2)), 'dtype.safetensors', '"w"', 'F8_E4M3', 'F32, F16, BF16', 'I64');
  });
  it('bad shape', () => {
    const h = { w: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } };
    throwsLL(() => SafetensorsFile.open(craft('shape.safetensors', h, 8)), 'shape.safetensors', '"w"', '[2,-1]');
  });
  it('bad __metadata__', () => {
    throwsLL(() => SafetensorsFile.open(craft('meta.bad.safetensors', { __metadata__: { n: 1 }, ...good }, 8)), 'meta.bad.safetensors', '"n"');
  });
  it('offsets out of range', () => {
    const h = { a: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } };
    throwsLL(() => SafetensorsFile.open(craft('range.safetensors', h, 8)), 'range.safetensors', '"a"', '[8, 16]', '8-byte data section');
    const neg = { a: { dtype: 'F32', shape: [2], data_offsets: [-8, 0] } };
    throwsLL(() => SafetensorsFile.open(craft('neg.safetensors', neg, 8)), 'neg.safetensors', '"a"', '[-8,0]');
    const rev = { a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } };
    throwsLL(() => SafetensorsFile.open(craft('rev.safetensors', rev, 8)), 'rev.safetensors', '"a"', 'end before begin');
  });
  it('a header that lies about sizes (bytes != numel × itemsize)', () => {
    const h = { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } };
    throwsLL(() => SafetensorsFile.open(craft('lie.safetensors', h, 8)), 'lie.safetensors', '"a"', '8 bytes', '12 bytes');
  });
  it('a hole between tensors', () => {
    const h = { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } };
    throwsLL(() => SafetensorsFile.open(craft('hole.safetensors', h, 12)), 'hole.safetensors', '"b"', '[4, 8)', 'hole');
  });
  it('a name given twice in the header (JSON.parse would keep the last one silently)', () => {
    const a = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}';
    const b = '{"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}';
    throwsLL(() => SafetensorsFile.open(craft('dup.safetensors', `{"w": ${a}, "w": ${b}}`, 8)), 'dup.safetensors', 'names "w" twice', 'duplicate keys');
    throwsLL(() => SafetensorsFile.open(craft('dupsame.safetensors', `{"w": ${a}, "v": ${b}, "w": ${a}}`, 8)), 'names "w" twice');
    // Escapes, nested objects and colons inside strings are not keys.
    const odd = `{"__metadata__": {"w": "x:\\"y\\"", "v": "{"}, "w\\"q": ${a}, "w": ${b}}`;
    assert.deepEqual(SafetensorsFile.open(craft('odd.safetensors', odd, 8)).names(), ['w"q', 'w']);
  });
  it('overlapping tensors', () => {
    const h = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    throwsLL(() => SafetensorsFile.open(craft('overlap.safetensors', h, 8)), 'overlap.safetensors', '"a"', '"b"', 'overlaps');
  });
  it('a truncated file (data section shorter than the offsets say)', () => {
    const file = path.join(dir, 'trunc.safetensors');
    writeSafetensors(file, [{ name: 'w', dtype: 'f32', shape: [16], data: new Float32Array(16) }]);
    fs.truncateSync(file, fs.statSync(file).size - 5);
    throwsLL(() => SafetensorsFile.open(file), 'trunc.safetensors', '"w"', 'truncated', 're-download');
  });
  it('extra bytes after the last tensor', () => {
    throwsLL(() => SafetensorsFile.open(craft('extra.safetensors', good, 12)), 'extra.safetensors', '4 unexplained bytes');
  });
  it('missing file and folder path', () => {
    throwsLL(() => SafetensorsFile.open(path.join(dir, 'nope.safetensors')), 'nope.safetensors', 'not found');
    throwsLL(() => SafetensorsFile.open(dir), dir, 'folder');
  });
  it('missing tensor lists the closest names', () => {
    const file = path.join(dir, 'names.safetensors');
    writeSafetensors(file, ['model.norm.weight', 'lm_head.weight', 'model.embed_tokens.weight'].map((name) => ({ ...f32([1], [0]), name })));
    const st = SafetensorsFile.open(file);
    throwsLL(() => st.read('model.norm.weights'), 'names.safetensors', '"model.norm.weights"', 'closest: "model.norm.weight"');
    throwsLL(() => st.info('x'), 'names.safetensors', '"x"', '3 tensors');
    assert.equal(st.has('lm_head.weight'), true);
    assert.equal(st.has('x'), false);
    st.close();
    throwsLL(() => st.readRaw('lm_head.weight'), 'names.safetensors', 'closed');
  });
});

describe('safetensors writer validation and atomicity', () => {
  const target = () => path.join(dir, 'w.safetensors');
  it('rejects a data length that does not match the shape', () => {
    throwsLL(() => writeSafetensors(target(), [{ ...f32([2, 2], [1, 2, 3]), name: 'w' }]), 'w.safetensors', '"w"', '4 elements', '3');
  });
  it('rejects duplicate names, the __metadata__ name and wrong array types', () => {
    throwsLL(() => writeSafetensors(target(), [{ ...f32([1], [1]), name: 'a' }, { ...f32([1], [1]), name: 'a' }]), '"a"', 'twice');
    throwsLL(() => writeSafetensors(target(), [{ ...f32([1], [1]), name: '__metadata__' }]), '__metadata__');
    throwsLL(() => writeSafetensors(target(), [{ name: 'b', dtype: 'bf16', shape: [1], data: new Float32Array(1) }]), '"b"', 'Uint16Array', 'fromFloatArray');
    throwsLL(() => writeSafetensors(target(), [{ name: 'q', dtype: 'F8' as 'F32', shape: [1], data: new Float32Array(1) }]), '"q"', 'F8');
    throwsLL(() => writeSafetensors(target(), [], { n: 1 as unknown as string }), '"n"', 'strings');
    assert.equal(fs.existsSync(target()), false);
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('.w.safetensors')), []);
  });
  it('streams data functions one at a time, after the header', () => {
    const file = path.join(dir, 'stream.safetensors');
    const calls: string[] = [];
    const entries = ['a', 'b', 'c'].map((name, i): TensorEntry => ({
      name, dtype: 'f32', shape: [2], data: () => { calls.push(name); return Float32Array.from([i, i]); },
    }));
    writeSafetensors(file, entries);
    assert.deepEqual(calls, ['a', 'b', 'c']);
    const st = SafetensorsFile.open(file);
    assert.deepEqual(Array.from(st.read('c').data), [2, 2]);
    st.close();
  });
  it('an interrupted write leaves the previous file byte-identical and no temporary', () => {
    const file = path.join(dir, 'atomic.safetensors');
    writeSafetensors(file, [{ ...f32([2], [1, 2]), name: 'old' }]);
    const before = fs.readFileSync(file);
    const entries: TensorEntry[] = [
      { name: 'a', dtype: 'f32', shape: [1 << 16], data: () => new Float32Array(1 << 16) },
      { name: 'b', dtype: 'f32', shape: [4], data: () => { throw new Error('provider failed'); } },
    ];
    assert.throws(() => writeSafetensors(file, entries), /provider failed/);
    assert.deepEqual(fs.readFileSync(file), before);
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('atomic.safetensors')), ['atomic.safetensors']);
    // A provider returning the wrong length is caught the same way.
    const short: TensorEntry = { name: 'c', dtype: 'f32', shape: [4], data: () => new Float32Array(3) };
    throwsLL(() => writeSafetensors(file, [short]), 'atomic.safetensors', '"c"');
    assert.deepEqual(fs.readFileSync(file), before);
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('atomic.safetensors')), ['atomic.safetensors']);
  });
});
