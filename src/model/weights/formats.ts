import { WeightsError } from '../../errors.js';
import type { TensorMap } from '../tensor.js';
import { ANY_MODEL_BUDGET, type WeightsBudget } from './budget.js';
import { readSafetensors } from './safetensors.js';

/**
 * A checkpoint file format: recognised by its first bytes (and name), read into float32 tensors, refusing
 * any size it claims beyond the budget before allocating it.
 */
export interface WeightsFormat {
  name: string;
  sniff(bytes: Uint8Array, fileName: string): boolean;
  read(bytes: Uint8Array, fileName: string, budget: WeightsBudget): TensorMap;
}

const FORMATS: WeightsFormat[] = [
  {
    name: 'safetensors',
    // u64 header length, then a JSON object.
    sniff: (b, f) => f.endsWith('.safetensors') || (b.length > 9 && b[8] === 0x7b && b[6] === 0 && b[7] === 0),
    read: (b, f, budget) => readSafetensors(b, f, budget),
  },
];

export function registerFormat(f: WeightsFormat): void {
  if (!FORMATS.some((x) => x.name === f.name)) FORMATS.unshift(f);
}

/** `budget`: what the model can need (weightsBudget); without one, only what any model within LIMITS could. */
export function readWeights(bytes: Uint8Array, fileName: string, budget: WeightsBudget = ANY_MODEL_BUDGET): TensorMap {
  const f = FORMATS.find((x) => x.sniff(bytes, fileName));
  if (!f) throw new WeightsError(`${fileName}: not a checkpoint format this tool reads (${FORMATS.map((x) => x.name).join(', ')})`);
  return f.read(bytes, fileName, budget);
}
