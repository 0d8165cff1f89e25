/** Small text helpers for messages. */

/** The `k` names nearest to `target` by edit distance (ties keep the given order). */
export function closestNames(target: string, names: readonly string[], k: number): string[] {
  const scored = names.map((n, i) => ({ n, i, d: editDistance(target, n) }));
  scored.sort((a, b) => a.d - b.d || a.i - b.i);
  return scored.slice(0, k).map((s) => s.n);
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** A whole number written in decimal, or as Nk for N × 1024 (8k = 8192); null for anything else. */
export function parseKiloInt(s: string): number | null {
  const m = /^(\d+)(k)?$/i.exec(s.trim());
  return m ? Number(m[1]) * (m[2] ? 1024 : 1) : null;
}

/** camelCase → kebab-case (config keys → command-line flags). */
export function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** A duration in seconds as 1h02m, 3m05s or 12s. */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  const s = Math.max(0, Math.round(sec));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(r).padStart(2, '0')}s`;
  return `${r}s`;
}

/**
 * Bytes read as UTF-8 text without a leading byte-order mark, and whether they were valid
 * UTF-8 (invalid bytes become U+FFFD).
 */
export function decodeUtf8(bytes: Uint8Array): { text: string; valid: boolean } {
  let text: string;
  let valid = true;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);
    valid = false;
  }
  return { text: text.charCodeAt(0) === 0xfeff ? text.slice(1) : text, valid };
}
