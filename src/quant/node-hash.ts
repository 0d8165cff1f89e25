/**
 * Node's native SHA-256 for the 4-bit fingerprints (fingerprint.ts), installed when this
 * module is imported: the Node model loader imports it (and with it the Node entry and the
 * command line); the browser entry does not, and keeps the plain-JavaScript one (the
 * digests are the same).
 */
import { createHash } from 'node:crypto';
import { setFingerprintHash, type FingerprintHash } from './fingerprint.js';

/** A fingerprint hash over node:crypto. */
export function nodeHash(): FingerprintHash {
  const h = createHash('sha256');
  const self: FingerprintHash = {
    update(data) { h.update(data); return self; },
    hex: () => h.digest('hex'),
  };
  return self;
}

setFingerprintHash(nodeHash);
