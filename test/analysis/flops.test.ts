/** The FLOPs model reproduces the paper's anchors; the memory model's terms; shapes and lengths. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { flopsTable, forwardFlops, formatFlopsTable } from '../../src/analysis/flops.js';
import { activationMemory } from '../../src/analysis/memory.js';
import { parseLength, PRESETS, resolveShape } from '../../src/analysis/presets.js';
import { goldenDir } from '../helpers/fixtures.js';
import { throwsLL } from '../helpers/errors.js';

const pct = (x: number): number => Math.round(1000 * x) / 10;

describe('forward FLOPs', () => {
  it('Llama-2 7B: attention 24.5% at 8k and 72.2% at 64k; 39.4% with S²-Attn at 64k (SPEC §8)', () => {
    const m = PRESETS['llama-2-7b']!;
    assert.equal(pct(forwardFlops(m, 8192).attentionShare), 24.5);
    assert.equal(pct(forwardFlops(m, 65536).attentionShare), 72.2);
    assert.equal(pct(forwardFlops(m, 65536, 65536 / 4).attentionShare), 39.4);
    const t = flopsTable(m, [8192, 65536]);
    assert.match(formatFlopsTable(m, t, 0.25), /8192 .* 24\.5% .*\n65536 .* 72\.2% .* 39\.4%/);
  });

  it('each component by hand for a small config (GQA): 2·m·n·k, full N×N attention, LM head in other', () => {
    const m = { name: 't', hidden: 8, intermediate: 12, layers: 3, heads: 4, kvHeads: 2, headDim: 2, vocab: 10 };
    const N = 16;
    const f = forwardFlops(m, N);
    assert.equal(f.projections, 3 * (2 * N * 8 * 8 + 2 * 2 * N * 8 * 4 + 2 * N * 8 * 8));
    assert.equal(f.attention, 3 * (2 * N * N * 8 + 2 * N * N * 8));
    assert.equal(f.ffn, 3 * 3 * 2 * N * 8 * 12);
    assert.equal(f.other, 2 * N * 8 * 10);
    assert.equal(f.total, f.projections + f.attention + f.ffn + f.other);
    assert.equal(forwardFlops(m, N, 4).attention, f.attention / 4, 'S² with G = N/4 does a quarter of the attention work');
    const g = forwardFlops(PRESETS['llama-2-70b']!, 4096);
    assert.equal(g.projections, 80 * (2 * 4096 * 8192 * 8192 * 2 + 2 * 2 * 4096 * 8192 * 1024), '70B: k and v have 8 heads');
  });

  it('shapes from presets and config files; lengths with k', () => {
    assert.equal(resolveShape('7b').name, 'Llama-2 7B');
    assert.equal(resolveShape('Llama-2-13B').layers, 40);
    const tiny = resolveShape(goldenDir('tiny-llama'));
    assert.deepEqual([tiny.hidden, tiny.kvHeads, tiny.vocab], [32, 2, 96]);
    throwsLL(() => resolveShape('llama-9'), 'neither a preset');
    assert.deepEqual(['8k', '65536', '100000', '64K'].map(parseLength), [8192, 65536, 100000, 65536]);
    throwsLL(() => parseLength('8kb'), 'an integer or Nk');
  });
});

describe('activation memory', () => {
  const m = PRESETS['llama-2-7b']!;
  it('per-token terms, checkpointing, and where S²-Attn matters', () => {
    const N = 4096;
    const fused = activationMemory(m, N, { checkpointing: false, attention: 'fused', G: N });
    const perToken = 4 * 4096 + 2 * 4096 + 2 * 4096 + 4 * 11008;
    assert.equal(fused.perLayer, N * perToken * 2 + N * 32 * 4);
    assert.equal(fused.layers, 32 * fused.perLayer);
    const ckpt = activationMemory(m, N, { checkpointing: true, attention: 'fused', G: N });
    assert.equal(ckpt.layers, 32 * N * 4096 * 2 + fused.perLayer);
    assert.ok(ckpt.total < fused.total / 5);
    const s2 = activationMemory(m, N, { checkpointing: false, attention: 'fused', G: N / 4 });
    assert.equal(s2.total, fused.total, 'a fused kernel keeps no scores: S²-Attn saves compute, not memory');
    const eager = activationMemory(m, N, { checkpointing: false, attention: 'eager', G: N });
    const eagerS2 = activationMemory(m, N, { checkpointing: false, attention: 'eager', G: N / 4 });
    assert.equal(eager.scoresPerLayer, 32 * N * N * 2);
    assert.equal(eagerS2.scoresPerLayer, eager.scoresPerLayer / 4);
  });
});
