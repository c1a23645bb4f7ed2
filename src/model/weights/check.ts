import { WeightsError } from '../../errors.js';
import { archOf } from '../arch/index.js';
import type { ModelConfig } from '../config.js';
import { sameShape, shapeStr, type TensorMap } from '../tensor.js';

/** Names listed per kind of problem; a checkpoint of another model altogether would otherwise list thousands. */
export const LISTED_NAMES = 12;

/** The first LISTED_NAMES items, then how many more there are: a message stays a few lines whatever the file. */
export function shortList(items: readonly string[], sep = ', ', n = LISTED_NAMES): string {
  return items.length <= n ? items.join(sep) : `${items.slice(0, n).join(sep)}${sep}and ${items.length - n} more`;
}

/**
 * Every expected tensor must be present with its exact shape, and nothing else may be there. All problems
 * are gathered into one error so a user fixes a checkpoint in one go.
 */
export function checkWeights(cfg: ModelConfig, weights: TensorMap, source: string): void {
  const expected = archOf(cfg).params(cfg);
  const missing: string[] = [];
  const misShaped: string[] = [];
  for (const [name, shape] of expected) {
    const t = weights.get(name);
    if (!t) missing.push(name);
    else if (!sameShape(t.shape, shape)) misShaped.push(`${name}: expected ${shapeStr(shape)}, found ${shapeStr(t.shape)}`);
  }
  const unexpected = [...weights.keys()].filter((k) => !expected.has(k));
  if (missing.length + misShaped.length + unexpected.length === 0) return;
  const parts: string[] = [];
  if (missing.length) parts.push(`missing (${missing.length}): ${shortList(missing)}`);
  if (unexpected.length) parts.push(`unexpected (${unexpected.length}): ${shortList(unexpected)}`);
  if (misShaped.length) parts.push(`wrong shape (${misShaped.length}): ${shortList(misShaped, '; ')}`);
  throw new WeightsError(`${source} does not fit model "${cfg.name}":`, parts);
}
