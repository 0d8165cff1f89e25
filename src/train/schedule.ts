/**
 * Learning-rate schedules with Hugging Face semantics: the optimizer step with 0-based
 * index k uses lr · factor(k). Warmup is linear from 0 (so step 0 has lr 0), as in
 * `get_constant_schedule_with_warmup` and friends.
 */
import { LongLoraError } from '../errors.js';

export type ScheduleType = 'constant' | 'linear' | 'cosine';
export const SCHEDULES: readonly ScheduleType[] = ['constant', 'linear', 'cosine'];

export interface Schedule {
  type: ScheduleType;
  lr: number;
  warmupSteps: number;
  totalSteps: number;
}

export function checkSchedule(s: Schedule): void {
  if (!SCHEDULES.includes(s.type)) throw new LongLoraError(`unknown schedule '${String(s.type)}'; choose one of ${SCHEDULES.join(', ')}`);
  if (!(s.lr > 0)) throw new LongLoraError(`learning rate must be positive, got ${s.lr}`);
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) throw new LongLoraError(`warmup steps must be a non-negative integer, got ${s.warmupSteps}`);
}

/** The learning rate of the optimizer step with 0-based index `k`. */
export function lrAt(s: Schedule, k: number): number {
  if (k < s.warmupSteps) return (s.lr * k) / Math.max(1, s.warmupSteps);
  const rest = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = (k - s.warmupSteps) / rest;
  switch (s.type) {
    case 'constant': return s.lr;
    case 'linear': return s.lr * Math.max(0, 1 - progress);
    case 'cosine': return s.lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
  }
}
