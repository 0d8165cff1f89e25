/**
 * The backends tests run on. The CPU reference backend is always first (and is the only
 * one with f64); faster backends join here as they are added, and are skipped with a
 * visible message when they cannot initialise on this machine.
 */
import type { Backend } from '../../src/backend/backend.js';
import { backendNames, cpuBackend, getBackend } from '../../src/backend/registry.js';

export interface TestBackend {
  name: string;
  backend: Backend | null;
  /** Why it is unavailable, when backend is null. */
  skip?: string;
}

let cached: TestBackend[] | null = null;

export async function testBackends(): Promise<TestBackend[]> {
  if (cached) return cached;
  const out: TestBackend[] = [{ name: 'cpu', backend: cpuBackend() }];
  for (const name of backendNames()) {
    if (name === 'cpu') continue;
    try {
      out.push({ name, backend: await getBackend(name) });
    } catch (e) {
      out.push({ name, backend: null, skip: e instanceof Error ? e.message : String(e) });
    }
  }
  cached = out;
  return out;
}
