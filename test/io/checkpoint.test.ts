import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { writeDirAtomic, writeJsonAtomic } from '../../src/io/atomic.js';
import {
  INDEX_FILE, SINGLE_FILE, openCheckpoint, readJsonFile, shardFileName, writeCheckpoint,
} from '../../src/io/checkpoint.js';
import { SafetensorsFile, writeSafetensors, type TensorEntry } from '../../src/io/safetensors.js';
import { throwsLL } from '../helpers/errors.js';
import { tempFolders } from '../helpers/tmp.js';

const fresh = tempFolders('ck');

/** Six f32 tensors of 4 elements (16 bytes each), values tagged by index. */
function tensors(tag = 0): TensorEntry[] {
  const names = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.mlp.up_proj.weight',
    'model.layers.1.self_attn.q_proj.weight', 'model.norm.weight', 'lm_head.weight'];
  return names.map((name, i) => ({ name, dtype: 'f32', shape: [2, 2], data: Float32Array.from([i, i + 0.5, tag, -i]) }));
}

function snapshot(dir: string): Map<string, Buffer> {
  return new Map(fs.readdirSync(dir).sort().map((f) => [f, fs.readFileSync(path.join(dir, f))]));
}

describe('checkpoint write and read', () => {
  it('writes a single model.safetensors when it fits, with format=pt metadata', () => {
    const dir = fresh();
    const out = writeCheckpoint(dir, tensors());
    assert.deepEqual(fs.readdirSync(dir), [SINGLE_FILE]);
    assert.equal(out.index, null);
    assert.equal(out.totalSize, 6 * 16);
    const ck = openCheckpoint(dir);
    assert.deepEqual(ck.files, [path.join(dir, SINGLE_FILE)]);
    assert.deepEqual(ck.names(), tensors().map((t) => t.name));
    assert.deepEqual(Array.from(ck.read('model.norm.weight').data), [4, 4.5, 0, -4]);
    assert.equal(ck.info('lm_head.weight').file, path.join(dir, SINGLE_FILE));
    throwsLL(() => ck.read('model.norm.weights'), SINGLE_FILE, '"model.norm.weights"', '"model.norm.weight"');
    ck.close();
    const st = SafetensorsFile.open(path.join(dir, SINGLE_FILE));
    assert.deepEqual(st.metadata, { format: 'pt' });
    st.close();
  });

  it('shards with an index, round-trips, and opens shards lazily', () => {
    const dir = fresh();
    const out = writeCheckpoint(dir, tensors(), { maxShardBytes: 40, metadata: { source: 'test' } });
    const shards = [1, 2, 3].map((k) => shardFileName(k, 3));
    assert.deepEqual(fs.readdirSync(dir).sort(), [...shards, INDEX_FILE].sort());
    assert.deepEqual(out.files, shards.map((s) => path.join(dir, s)));
    const index = readJsonFile(path.join(dir, INDEX_FILE)) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    assert.equal(index.metadata.total_size, 96);
    assert.deepEqual(Object.keys(index.weight_map), Object.keys(index.weight_map).sort());
    assert.equal(index.weight_map['model.embed_tokens.weight'], 'model-00001-of-00003.safetensors');
    assert.equal(index.weight_map['lm_head.weight'], 'model-00003-of-00003.safetensors');

    const opens = mock.method(SafetensorsFile, 'open');
    try {
      const ck = openCheckpoint(dir);
      assert.equal(opens.mock.callCount(), 0, 'no shard opened yet');
      tensors().forEach((t, i) => {
        assert.deepEqual(Array.from(ck.read(t.name).data), [i, i + 0.5, 0, -i], t.name);
      });
      assert.equal(opens.mock.callCount(), 3, 'each shard opened once');
      assert.equal(ck.info('model.norm.weight').file, path.join(dir, shards[2]!));
      assert.equal(ck.has('model.norm.weight'), true);
      assert.equal(ck.has('nope'), false);
      throwsLL(() => ck.read('nope'), INDEX_FILE, '"nope"');
      ck.close();
    } finally {
      opens.mock.restore();
    }
    const st = SafetensorsFile.open(out.files[0]!);
    assert.deepEqual(st.metadata, { format: 'pt', source: 'test' });
    st.close();
  });

  it('gives a tensor bigger than maxShardBytes a shard of its own', () => {
    const dir = fresh();
    const entries: TensorEntry[] = [
      { name: 'a', dtype: 'u8', shape: [4], data: new Uint8Array(4) },
      { name: 'big', dtype: 'f32', shape: [100], data: new Float32Array(100) },
      { name: 'b', dtype: 'u8', shape: [4], data: new Uint8Array(4) },
    ];
    const out = writeCheckpoint(dir, entries, { maxShardBytes: 50 });
    assert.equal(out.files.length, 3);
    const ck = openCheckpoint(dir);
    ck.verify();
    assert.equal(ck.info('big').file, out.files[1]);
    ck.close();
  });

  it('rewriting replaces the previous layout and removes stale shards and index', () => {
    const dir = fresh();
    fs.writeFileSync(path.join(dir, 'config.json'), '{}');
    writeCheckpoint(dir, tensors(), { maxShardBytes: 40 });
    writeCheckpoint(dir, tensors(1));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['config.json', SINGLE_FILE]);
    writeCheckpoint(dir, tensors(2), { maxShardBytes: 60 });
    assert.deepEqual(fs.readdirSync(dir).sort(), ['config.json', INDEX_FILE, shardFileName(1, 2), shardFileName(2, 2)].sort());
    const ck = openCheckpoint(dir);
    assert.equal(ck.read('lm_head.weight').data[2], 2);
    ck.close();
  });

  it('an interrupted sharded write leaves the previous checkpoint byte-identical and no temporaries', () => {
    const dir = fresh();
    writeCheckpoint(dir, tensors(), { maxShardBytes: 40 });
    const before = snapshot(dir);
    const entries = tensors(7);
    entries[4] = { ...entries[4]!, data: () => { throw new Error('provider failed'); } };
    assert.throws(() => writeCheckpoint(dir, entries, { maxShardBytes: 40 }), /provider failed/);
    assert.deepEqual(snapshot(dir), before);
  });

  it('rejects duplicate names and a bad maxShardBytes before writing anything', () => {
    const dir = fresh();
    const t = tensors();
    throwsLL(() => writeCheckpoint(dir, [...t, t[0]!]), dir, `"${t[0]!.name}"`, 'twice');
    throwsLL(() => writeCheckpoint(dir, t, { maxShardBytes: 0 }), 'maxShardBytes');
    assert.deepEqual(fs.readdirSync(dir), []);
  });
});

describe('checkpoint rejects bad folders', () => {
  it('an index pointing to a missing shard names the index and the shard', () => {
    const dir = fresh();
    writeCheckpoint(dir, tensors(), { maxShardBytes: 40 });
    fs.rmSync(path.join(dir, shardFileName(2, 3)));
    throwsLL(() => openCheckpoint(dir), INDEX_FILE, shardFileName(2, 3), 'download');
  });

  it('a weight_map naming a tensor that is not in its shard', () => {
    const dir = fresh();
    writeCheckpoint(dir, tensors(), { maxShardBytes: 40 });
    const ip = path.join(dir, INDEX_FILE);
    const index = readJsonFile(ip) as { weight_map: Record<string, string> };
    index.weight_map['model.ghost.weight'] = shardFileName(1, 3);
    writeJsonAtomic(ip, index);
    const ck = openCheckpoint(dir);
    throwsLL(() => ck.read('model.embed_tokens.weight'), INDEX_FILE, '"model.ghost.weight"', shardFileName(1, 3));
    throwsLL(() => ck.verify(), INDEX_FILE, '"model.ghost.weight"');
    assert.deepEqual(Array.from(ck.read('lm_head.weight').data), [5, 5.5, 0, -5], 'other shards still readable');
    ck.close();
  });

  it('a tensor present in two shards', () => {
    const dir = fresh();
    writeCheckpoint(dir, tensors(), { maxShardBytes: 40 });
    const extra = tensors().slice(0, 2).concat([{ name: 'lm_head.weight', dtype: 'f32', shape: [1], data: new Float32Array(1) }]);
    writeSafetensors(path.join(dir, shardFileName(1, 3)), extra);
    const ck = openCheckpoint(dir);
    throwsLL(() => ck.verify(), '"lm_head.weight"', shardFileName(1, 3), shardFileName(3, 3), 'two shards');
    ck.close();
  });

  it('an invalid index: bad JSON, no weight_map, a shard path outside the folder', () => {
    const dir = fresh();
    const ip = path.join(dir, INDEX_FILE);
    fs.writeFileSync(ip, '{"weight_map": ');
    throwsLL(() => openCheckpoint(dir), INDEX_FILE, 'not valid JSON');
    fs.writeFileSync(ip, '{"metadata": {}}');
    throwsLL(() => openCheckpoint(dir), INDEX_FILE, 'weight_map');
    fs.writeFileSync(ip, JSON.stringify({ weight_map: { w: '../x.safetensors' } }));
    throwsLL(() => openCheckpoint(dir), INDEX_FILE, '"w"', '../x.safetensors');
  });

  it('a folder without a safetensors checkpoint says what it holds', () => {
    const dir = fresh();
    throwsLL(() => openCheckpoint(dir), dir, SINGLE_FILE, INDEX_FILE);
    fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), '');
    throwsLL(() => openCheckpoint(dir), 'adapter_model.safetensors', 'adapter');
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), '');
    throwsLL(() => openCheckpoint(dir), 'pytorch_model.bin', 'convert it to safetensors');
    throwsLL(() => openCheckpoint(path.join(dir, 'missing')), 'missing', 'does not exist');
    throwsLL(() => openCheckpoint(path.join(dir, 'pytorch_model.bin')), 'pytorch_model.bin', 'not a checkpoint folder');
  });

  it('a corrupt single file fails at open', () => {
    const dir = fresh();
    writeCheckpoint(dir, tensors());
    const file = path.join(dir, SINGLE_FILE);
    fs.truncateSync(file, fs.statSync(file).size - 1);
    throwsLL(() => openCheckpoint(dir), SINGLE_FILE, 'truncated');
  });
});

describe('readJsonFile and atomic helpers', () => {
  it('readJsonFile reads JSON and names the file on errors', () => {
    const dir = fresh();
    const file = path.join(dir, 'config.json');
    throwsLL(() => readJsonFile(file), 'config.json', 'not found');
    fs.writeFileSync(file, '{"hidden_size": 64,}');
    throwsLL(() => readJsonFile(file), 'config.json', 'not valid JSON');
    fs.writeFileSync(file, '{"hidden_size": 64}');
    assert.deepEqual(readJsonFile(file), { hidden_size: 64 });
  });

  it('writeDirAtomic replaces a folder, and leaves it intact when filling fails', () => {
    const parent = fresh();
    const dir = path.join(parent, 'out');
    writeDirAtomic(dir, (tmp) => fs.writeFileSync(path.join(tmp, 'a.txt'), 'one'));
    assert.equal(fs.readFileSync(path.join(dir, 'a.txt'), 'utf8'), 'one');
    writeDirAtomic(dir, (tmp) => fs.writeFileSync(path.join(tmp, 'b.txt'), 'two'));
    assert.deepEqual(fs.readdirSync(dir), ['b.txt']);
    assert.throws(() => writeDirAtomic(dir, (tmp) => {
      fs.writeFileSync(path.join(tmp, 'c.txt'), 'three');
      throw new Error('fill failed');
    }), /fill failed/);
    assert.deepEqual(fs.readdirSync(dir), ['b.txt']);
    assert.deepEqual(fs.readdirSync(parent), ['out']);
  });
});
