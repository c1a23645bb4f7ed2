/**
 * vit-cli as a library: open a model once and run it on pixel batches (openModel), or stream rows over image
 * paths with the same pipeline as the command line (classify, embed).
 */
export { classify, embed, type ClassifyOptions, type ClassifyRecord, type EmbedOptions, type EmbedRecord, type Inputs, type RunOptions } from './pipeline/api.js';
export { openModel, prepareModel, type OpenOptions } from './pipeline/open-model.js';
export type { ModelSpec } from './io/model-source.js';
export type { Engine, RunResult } from './model/engines/engine.js';
export type { ModelConfig } from './model/config.js';
export { VitError, UsageError, ModelError, WeightsError, OutputError, InputError } from './errors.js';
