/**
 * The GGUF writer, read back by an independent parser (@huggingface/gguf): header, every
 * metadata type, tensor infos (dims innermost first, ggml types, aligned offsets) and the
 * data bytes at their offsets; bad input refused with nothing written.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { gguf } from '@huggingface/gguf';
import { writeGguf, type GgufTensor, type GgufValue } from '../../src/io/gguf.js';
import { quantizeQ8_0 } from '../../src/io/ggml-quants.js';
import { f16BitsToF32 } from '../../src/tensor/dtype.js';
import { throwsLL } from '../helpers/errors.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('gguf');

async function readGguf(file: string): Promise<Awaited<ReturnType<typeof gguf>>> {
  return gguf(file, { allowLocalFile: true });
}

function bytesFrom(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 37 + seed * 11) & 0xff);
}

describe('GGUF writer', () => {
  it('writes metadata of every type and tensors that an independent parser reads back, aligned', async () => {
    const file = path.join(fresh(), 'm.gguf');
    const meta: Array<[string, GgufValue]> = [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['t.u8', { type: 'u8', value: 200 }],
      ['t.i8', { type: 'i8', value: -100 }],
      ['t.u16', { type: 'u16', value: 60000 }],
      ['t.i16', { type: 'i16', value: -30000 }],
      ['t.u32', { type: 'u32', value: 4000000000 }],
      ['t.i32', { type: 'i32', value: -2000000000 }],
      ['t.f32', { type: 'f32', value: 1e-5 }],
      ['t.bool', { type: 'bool', value: true }],
      ['t.u64', { type: 'u64', value: 2n ** 40n + 3n }],
      ['t.i64', { type: 'i64', value: -(2n ** 40n) }],
      ['t.f64', { type: 'f64', value: Math.PI }],
      ['t.strings', { type: 'array', itemType: 'string', values: ['▁the', '<0x0A>', ''] }],
      ['t.floats', { type: 'array', itemType: 'f32', values: Float32Array.of(0, -1.5, 3) }],
      ['t.ints', { type: 'array', itemType: 'i32', values: Int32Array.of(1, 6, -2) }],
    ];
    const tensors: GgufTensor[] = [
      { name: 'a.weight', shape: [3, 5], type: 'F16', bytes: () => bytesFrom(30, 1) }, // 30 bytes: padded to 32
      { name: 'b.weight', shape: [7], type: 'F32', bytes: () => bytesFrom(28, 2) },
      { name: 'c.weight', shape: [2, 3, 4], type: 'BF16', bytes: () => bytesFrom(48, 3) },
    ];
    const seen: string[] = [];
    writeGguf(file, meta, tensors, (i, t) => seen.push(`${i}:${t.name}`));
    assert.deepEqual(seen, ['0:a.weight', '1:b.weight', '2:c.weight']);

    const { metadata, tensorInfos, tensorDataOffset } = await readGguf(file);
    assert.equal(metadata.version, 3);
    assert.equal(metadata.tensor_count, 3n);
    assert.equal(metadata.kv_count, BigInt(meta.length + 1), 'general.alignment is added');
    const m = metadata as unknown as Record<string, unknown>;
    assert.equal(m['general.alignment'], 32);
    for (const [k, v] of meta) {
      if (v.type === 'array') assert.deepEqual(m[k], Array.from(v.values as ArrayLike<unknown>), k);
      else if (v.type === 'f32') assert.equal(m[k], Math.fround(v.value as number), k);
      else assert.equal(m[k], v.value, k);
    }
    assert.deepEqual(tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(t.offset)]), [
      ['a.weight', [5, 3], 1, 0],
      ['b.weight', [7], 0, 32],
      ['c.weight', [4, 3, 2], 30, 64],
    ]);
    assert.equal(Number(tensorDataOffset) % 32, 0);
    const buf = fs.readFileSync(file);
    tensors.forEach((t, i) => {
      const at = Number(tensorDataOffset) + Number(tensorInfos[i]!.offset);
      assert.deepEqual(new Uint8Array(buf.subarray(at, at + t.bytes().length)), t.bytes(), t.name);
    });
    assert.equal(buf.length, Number(tensorDataOffset) + 64 + 64, 'the data section ends aligned');
  });

  it('Q8_0 as llama.cpp quantises: d = max|x| / 127 in f16, values rounded half away from zero; 34 bytes per 32 values', async () => {
    const x = new Float32Array(64);
    x.set([127, -63.5, 0.5, -0.5, 1.49, 2.5, -127, 100]);
    // block 2 stays all zero: d = 0 and every value 0
    const q = quantizeQ8_0(x);
    assert.equal(q.length, 68);
    const v = new DataView(q.buffer);
    assert.equal(v.getUint16(0, true), 0x3c00, 'd = 1.0 in f16');
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map((j) => v.getInt8(2 + j)), [127, -64, 1, -1, 1, 3, -127, 100]);
    assert.deepEqual([...q.subarray(34)], new Array(34).fill(0));
    const y = Float32Array.from({ length: 32 }, (_, i) => (i - 10) * 0.013);
    const qy = new DataView(quantizeQ8_0(y).buffer);
    const d = f16BitsToF32(qy.getUint16(0, true));
    assert.ok(Math.abs(d - (21 * 0.013) / 127) < 1e-3 * d, `d ${d}`);
    y.forEach((val, i) => assert.ok(Math.abs(d * qy.getInt8(2 + i) - val) <= d / 2 + 1e-6, `value ${i}`));
    assert.throws(() => quantizeQ8_0(new Float32Array(33)), /multiple of 32/);

    const file = path.join(fresh(), 'q.gguf');
    writeGguf(file, [], [{ name: 'w', shape: [2, 32], type: 'Q8_0', bytes: () => quantizeQ8_0(x) }]);
    const { tensorInfos } = await readGguf(file);
    assert.deepEqual([tensorInfos[0]!.dtype, tensorInfos[0]!.shape.map(Number)], [8, [32, 2]]);
    throwsLL(() => writeGguf(file, [], [{ name: 'w', shape: [2, 48], type: 'Q8_0', bytes: () => new Uint8Array(0) }]), 'Q8_0 needs rows that are a multiple of 32');
  });

  it('refuses duplicate keys and names, bad values and wrong byte counts, leaving an existing file untouched', async () => {
    const dir = fresh();
    const file = path.join(dir, 'm.gguf');
    fs.writeFileSync(file, 'previous');
    const t: GgufTensor = { name: 'x', shape: [4], type: 'F32', bytes: () => new Uint8Array(16) };
    throwsLL(() => writeGguf(file, [['k', { type: 'u8', value: 1 }], ['k', { type: 'u8', value: 2 }]], []), '"k" appears twice');
    throwsLL(() => writeGguf(file, [], [t, t]), '"x" appears twice');
    throwsLL(() => writeGguf(file, [['k', { type: 'u8', value: 256 }]], []), '"k"', 'not a valid u8');
    throwsLL(() => writeGguf(file, [['k', { type: 'u32', value: 1.5 }]], []), 'not a valid u32');
    throwsLL(() => writeGguf(file, [['k', { type: 'string', value: 3 }]], []), 'not a valid string');
    throwsLL(() => writeGguf(file, [], [{ ...t, shape: [0] }]), 'positive dimensions');
    throwsLL(() => writeGguf(file, [], [{ ...t, bytes: () => new Uint8Array(12) }]), '12 bytes given', 'takes 16');
    assert.equal(fs.readFileSync(file, 'utf8'), 'previous');
    assert.deepEqual(fs.readdirSync(dir), ['m.gguf'], 'no temporary left behind');
  });
});
