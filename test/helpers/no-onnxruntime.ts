/**
 * Preloaded with `node --import` (NODE_OPTIONS) to play a machine where onnxruntime-node does not load: its
 * import fails in every thread, as it does where the package or its native library is missing.
 */
import { register } from 'node:module';

const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier === 'onnxruntime-node') throw new Error('onnxruntime-node is unavailable in this test');
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
