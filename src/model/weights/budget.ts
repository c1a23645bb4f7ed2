import { WeightsError } from '../../errors.js';
import { LIMITS } from '../limits.js';
import { shapeStr } from '../tensor.js';

/**
 * What a checkpoint may claim, from what the model can need. Readers check every size a file states (a
 * tensor's shape, a storage's length, a zip member's inflated size, the file's own size) against it before
 * allocating or inflating anything, so a small file cannot ask for gigabytes.
 */
export interface WeightsBudget {
  /** Elements of the largest tensor the model has: a tensor or array claiming more is refused. */
  maxTensorElements: number;
  /** Elements of everything read from one file together (a torch storage may hold several tensors). */
  totalElements: number;
}

/** The widest element a checkpoint stores (float64): byte limits are element limits times this. */
export const MAX_ITEM_BYTES = 8;

/**
 * Without a model to compare with (library calls, tests): the largest tensor and total any config within
 * LIMITS could have. Float32Array holds at most 2^32 elements.
 */
export const ANY_MODEL_BUDGET: WeightsBudget = { maxTensorElements: 2 ** 32 - 1, totalElements: LIMITS.params.max };

/**
 * Extras a loadable checkpoint carries beyond the model's tensors (integer buffers, a Hugging Face pooler or
 * pre-logits layer, the unused part of a shared storage): the total may reach twice the model plus this.
 */
const TOTAL_SLACK = 2 ** 24;

/**
 * The budget for the tensors of `params` (an architecture's canonical names and shapes): no tensor larger
 * than the largest of them, no more in all than twice their total plus TOTAL_SLACK.
 */
export function budgetFor(params: Map<string, number[]>): WeightsBudget {
  let max = 0;
  let total = 0;
  for (const shape of params.values()) {
    const n = shape.reduce((a, d) => a * d, 1);
    max = Math.max(max, n);
    total += n;
  }
  return { maxTensorElements: max, totalElements: 2 * total + TOTAL_SLACK };
}

/** The most bytes a checkpoint file within `budget` can take: every element at 8 bytes, plus headers. */
export function maxFileBytes(budget: WeightsBudget): number {
  return budget.totalElements * MAX_ITEM_BYTES + 128 * 2 ** 20;
}

/** Keeps count of what one file's reader has claimed; each claim is checked before it is allocated. */
export class BudgetMeter {
  private used = 0;

  constructor(readonly budget: WeightsBudget, readonly source: string) {}

  /** One tensor (or array, or view) of this shape, named by `what`. */
  tensor(shape: readonly number[], what: string): number {
    const n = shape.reduce((a, d) => a * d, 1);
    if (!(n <= this.budget.maxTensorElements)) {
      throw new WeightsError(
        `${what}: ${shapeStr(shape)} is ${n} elements, more than the largest tensor the model has ` +
        `(${this.budget.maxTensorElements}); refused before allocating it`,
      );
    }
    return n;
  }

  /** `n` more elements read from the file (a storage, an array), named by `what`. */
  take(n: number, what: string): void {
    this.used += n;
    if (!(n <= this.budget.totalElements && this.used <= this.budget.totalElements)) {
      throw new WeightsError(
        `${what}: ${n} more elements would make ${this.used} in all, more than the model could need ` +
        `(${this.budget.totalElements}); refused before allocating them`,
      );
    }
  }
}
