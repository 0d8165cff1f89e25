/**
 * `--device webgpu|wasm|cpu|auto` is accepted by every command as another name for
 * `--backend` (the spelling users of other training tools expect); giving both is an error.
 */
import { UsageError } from './args.js';

/** argv with `--device X` / `--device=X` rewritten to `--backend X`. */
export function deviceAlias(argv: readonly string[]): string[] {
  const out: string[] = [];
  let device = false;
  let backend = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') { out.push(...argv.slice(i)); break; }
    if (a === '--backend' || a.startsWith('--backend=')) backend = true;
    if (a === '--device') {
      device = true;
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new UsageError('--device needs a value: webgpu, wasm, cpu or auto');
      out.push('--backend', v);
      i++;
    } else if (a.startsWith('--device=')) {
      device = true;
      out.push(`--backend=${a.slice('--device='.length)}`);
    } else out.push(a);
  }
  if (device && backend) throw new UsageError('--device and --backend name the same setting; give one of them');
  return out;
}
