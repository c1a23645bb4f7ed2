import { statSync } from 'node:fs';
import { int8WeightsFor } from '../io/cpus.js';
import { UsageError } from '../errors.js';
import { readFolderJson, writeModelFolder } from '../io/model-folder.js';
import { loadModel } from '../io/model-source.js';
import { resolveLabels } from '../io/labels.js';
import { archOf } from '../model/arch/index.js';
import { DTYPES, type Dtype } from '../model/engines/engine.js';
import { preprocessToHf } from '../model/preprocess.js';
import type { Context } from '../pipeline/context.js';
import { checkReduceRange, modelSpec } from '../pipeline/open-model.js';
import { MODEL_OPTIONS, type ArgsOf, type CommandBody } from './options.js';

const OPTIONS = {
  ...MODEL_OPTIONS,
  dtype: { type: 'string', choices: DTYPES, default: 'fp32', describe: 'fp32 (onnx/model.onnx), or int8 (onnx/model_quantized.onnx: transformers.js dtype q8)' },
  'reduce-range': {
    type: 'boolean', default: false,
    describe: 'int8 weights in 7 bits (onnxruntime\'s reduce_range), which x86 CPUs without VNNI multiply without saturating',
  },
} as const;

/** transformers.js_config.use_external_data_format, per ONNX file: which of the folder's graphs keep their weights beside them. */
function externalDataFlags(existing: Record<string, unknown> | null, files: string[]): Record<string, number> {
  const old = (existing?.['transformers.js_config'] as { use_external_data_format?: Record<string, number> } | undefined)?.use_external_data_format;
  const flags: Record<string, number> = { ...(old && typeof old === 'object' ? old : {}) };
  for (const f of files.filter((n) => n.endsWith('.onnx'))) {
    if (files.includes(`${f}_data`)) flags[f] = 1;
    else delete flags[f];
  }
  return flags;
}

export function exportCommand(ctx: Context): CommandBody {
  return {
    builder: (y) => y.positional('outdir', { type: 'string', describe: 'the folder to write (created if needed)' }).options(OPTIONS)
      .example('$0 export -m vit_base_patch16_224 -w vit_b16.safetensors vit-b16', 'config.json, preprocessor_config.json, onnx/model.onnx')
      .example('$0 export -m vit-b16-dir vit-b16 --dtype int8', 'adds onnx/model_quantized.onnx beside it')
      .example('$0 export -m vit-b16-dir vit-b16 --dtype int8 --reduce-range', 'the same, for CPUs without VNNI (AVX2 only)')
      .epilogue('The folder loads in transformers.js (pipeline("image-classification", folder, { dtype: "fp32" | "q8" })) and in any ' +
        'ONNX runtime: input pixel_values [batch, C, H, W], output logits; weights inline below 2 GB, else in model.onnx_data.'),
    handler: async (argv) => {
      const a = argv as unknown as ArgsOf<typeof OPTIONS> & { outdir?: string };
      if (!a.outdir) throw new UsageError('vit export needs an output folder: vit export -m MODEL OUTDIR');
      const reduceRange = a.reduceRange === true;
      checkReduceRange(reduceRange, a.dtype as Dtype);
      // Before the model is read: a file, device or FIFO in the folder's place is refused (as -o refuses a directory).
      const st = statSync(a.outdir, { throwIfNoEntry: false });
      if (st && !st.isDirectory()) throw new UsageError(`${a.outdir} is not a folder: vit export writes a folder (created if needed)`);
      const { config, weights } = await loadModel(modelSpec(a), ctx.verbose);
      const arch = archOf(config);
      const labelled = { ...config, labels: resolveLabels(config) };
      const { exportOnnx, EXPORT_FILES, INLINE_LIMIT } = await import('../model/engines/onnx-export.js');
      const onnx = exportOnnx(labelled, weights, a.dtype as Dtype, INLINE_LIMIT, reduceRange ? 'int7' : 'int8')
        .map((f) => ({ ...f, name: `onnx/${f.name}` }));
      const hf = arch.hfConfig(labelled);
      const flags = externalDataFlags(readFolderJson(a.outdir, 'config.json'), onnx.map((f) => f.name.slice('onnx/'.length)));
      if (Object.keys(flags).length > 0) hf['transformers.js_config'] = { use_external_data_format: flags };
      const text = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2) + '\n');
      const written = writeModelFolder(a.outdir, [
        ...onnx,
        { name: 'config.json', bytes: text(hf) },
        { name: 'preprocessor_config.json', bytes: text(preprocessToHf(config.preprocess)) },
      ]);
      ctx.note(`wrote ${written.join(', ')}`);
      if (a.dtype === 'int8' && !reduceRange && int8WeightsFor() === 'int7') {
        ctx.note(`${EXPORT_FILES.int8} holds 8-bit weights, whose products onnxruntime saturates on x86 CPUs without VNNI ` +
          'such as this one; --reduce-range writes them in 7 bits for those');
      }
    },
  };
}
