/**
 * Builds the WebAssembly kernels (assembly/*.ts) with the AssemblyScript compiler from
 * npm — no system compiler, nothing downloaded — in two flavours that the wasm backend
 * chooses between at run time:
 *   dist/src/backend/wasm/kernels-relaxed.wasm  SIMD + relaxed SIMD (fused multiply-add)
 *   dist/src/backend/wasm/kernels-simd.wasm     SIMD only
 * Both import one shared memory (threads) of at most 65536 pages (4 GiB).
 * Skips the work when both files are newer than every source. `--force` rebuilds.
 *
 *   node assembly/build.mjs [--force]
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const outDir = path.join(root, 'dist', 'src', 'backend', 'wasm');
const force = process.argv.includes('--force');

const common = [
  path.join(here, 'index.ts'),
  '-O3', '--runtime', 'stub', '--noAssert',
  '--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536',
  '--enable', 'simd', '--enable', 'threads',
  '--disableWarning', '112', // v128 in signatures of internal helpers
];
const flavours = [
  { file: 'kernels-relaxed.wasm', extra: ['--enable', 'relaxed-simd'] },
  { file: 'kernels-simd.wasm', extra: [] },
];

function newestSource() {
  let t = 0;
  for (const f of fs.readdirSync(here)) {
    if (f.endsWith('.ts') || f.endsWith('.mjs') || f.endsWith('.json')) t = Math.max(t, fs.statSync(path.join(here, f)).mtimeMs);
  }
  return t;
}

const src = newestSource();
fs.mkdirSync(outDir, { recursive: true });
for (const { file, extra } of flavours) {
  const out = path.join(outDir, file);
  if (!force && fs.existsSync(out) && fs.statSync(out).mtimeMs > src) continue;
  const tmp = `${out}.tmp`;
  const { error, stderr } = await asc.main([...common, ...extra, '--outFile', tmp]);
  if (error) {
    process.stderr.write(stderr.toString());
    console.error(`assembly/build.mjs: building ${file} failed: ${error.message}`);
    process.exit(1);
  }
  fs.renameSync(tmp, out);
  console.log(`built ${path.relative(root, out)} (${fs.statSync(out).size} bytes)`);
}
