/**
 * `longlora backends`: each compute backend on this machine, what it runs on or why it
 * cannot start, and which one `--backend auto` picks. `--tensor-cores` also asks WebGPU
 * for subgroup matrices, and says whether it has them.
 */
import { autoBackend, backendNames, getBackend } from '../../backend/registry.js';
import { useTensorCores } from '../../backend/tensor-cores.js';
import { parse, type OptionSpec } from '../args.js';

const OPTIONS: Record<string, OptionSpec> = {
  'tensor-cores': { type: 'boolean', help: 'also ask WebGPU for subgroup matrices (tensor cores) and report them' },
};

export async function backendsCommand(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora backends [--tensor-cores]', OPTIONS);
  if (!args) return;
  useTensorCores(args.values['tensor-cores'] === true);
  const names = backendNames();
  const width = Math.max(...names.map((n) => n.length));
  for (const name of names) {
    try {
      const be = await getBackend(name);
      console.log(`${name.padEnd(width)}  ${be.describe?.() ?? 'available'}`);
    } catch (e) {
      console.log(`${name.padEnd(width)}  unavailable: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const { backend, skipped } = await autoBackend();
  console.log(`\n--backend auto picks ${backend.name}`);
  for (const s of skipped) console.log(`  passed over ${s.name}: ${s.error}`);
}
