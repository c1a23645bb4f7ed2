import { ModelError } from '../../../errors.js';
import { channelsOf } from '../../config.js';
import { hfNumLabels, labelsFromId2label, meaningfulLabels, refuseTimmLayers, timmHubCfg, num, pair, problemTypeOf, type Json } from '../../config-json.js';
import { preprocessFromHf, preprocessFromTimm } from '../../preprocess.js';
import { validateSwinConfig, type SwinConfig } from './config.js';
import { SWIN_PRESETS } from './presets.js';

/** LayerNorm's default eps: timm and torchvision build every norm with it, HF its patch norms. */
const TORCH_LN_EPS = 1e-5;

function intList(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || v.length === 0) throw new ModelError(`config: ${what} must be a list of numbers, found ${JSON.stringify(v)}`);
  return v.map((x) => num(x, what));
}

function square(v: unknown, what: string, name: string): number {
  const [h, w] = pair(v, what);
  if (h !== w) throw new ModelError(`${name}: ${what} ${h}x${w} is not square (only square patches and windows are supported)`);
  return h;
}

/** A Hugging Face `config.json` of model_type swin plus its optional preprocessor config. */
export function swinFromHf(cfg: Json, pp: Json | null, name: string): SwinConfig {
  if (cfg.model_type !== 'swin') throw new ModelError(`${name}: model_type "${String(cfg.model_type)}" is not a Swin (swin)`);
  const act = cfg.hidden_act ?? 'gelu';
  if (act !== 'gelu') throw new ModelError(`${name}: hidden_act "${String(act)}" is not supported (exact gelu only)`);
  if (cfg.use_absolute_embeddings === true) throw new ModelError(`${name}: use_absolute_embeddings is not supported`);
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  const classifier = archs.length === 0 || archs.some((a) => /ForImageClassification/.test(a));
  const labels = labelsFromId2label(cfg.id2label);
  const imgSize = pair(cfg.image_size ?? 224, 'image_size');
  const depths = intList(cfg.depths ?? [2, 2, 6, 2], 'depths');
  const inChans = channelsOf(num(cfg.num_channels ?? 3, 'num_channels'), `${name}: num_channels`);
  return validateSwinConfig({
    arch: 'swin',
    name,
    imgSize,
    patchSize: square(cfg.patch_size ?? 4, 'patch_size', name),
    inChans,
    embedDim: num(cfg.embed_dim ?? 96, 'embed_dim'),
    depths,
    numHeads: intList(cfg.num_heads ?? [3, 6, 12, 24], 'num_heads'),
    windowSize: depths.map(() => num(cfg.window_size ?? 7, 'window_size')),
    mlpRatio: num(cfg.mlp_ratio ?? 4, 'mlp_ratio'),
    qkvBias: cfg.qkv_bias !== false,
    layerNormEps: num(cfg.layer_norm_eps ?? TORCH_LN_EPS, 'layer_norm_eps'),
    patchNormEps: TORCH_LN_EPS,
    numClasses: classifier ? hfNumLabels(cfg, labels) : 0,
    windowRule: 'hf',
    preprocess: preprocessFromHf(pp, imgSize, inChans, 'swin'),
    labels: classifier ? meaningfulLabels(labels) : null,
    problemType: problemTypeOf(cfg),
  });
}

/**
 * timm's window_size: one side for every stage, an (h, w) pair for every stage (timm reads any 2-long list so),
 * or one entry per stage.
 */
function timmWindows(v: unknown, stages: number, name: string): number[] {
  if (!Array.isArray(v)) return Array(stages).fill(num(v, 'window_size'));
  if (v.length === 2 && v.every((x) => typeof x === 'number')) return Array(stages).fill(square(v, 'window_size', name));
  if (v.length !== stages) throw new ModelError(`${name}: window_size has ${v.length} entries for ${stages} stages`);
  return v.map((x) => square(x, 'window_size', name));
}

/** One value for every stage (timm accepts a per-stage mlp_ratio; this tool only a single one). */
function oneRatio(v: unknown, name: string): number {
  if (!Array.isArray(v)) return num(v, 'mlp_ratio');
  const r = v.map((x) => num(x, 'mlp_ratio'));
  if (r.some((x) => x !== r[0])) throw new ModelError(`${name}: a per-stage mlp_ratio [${r.join(', ')}] is not supported`);
  return r[0];
}

/**
 * A timm hub `config.json`: architecture (a Swin preset, or any swin_* fully described by model_args) plus
 * model_args, num_classes, pretrained_cfg and label_names.
 */
export function swinFromTimm(cfg: Json, name: string): SwinConfig {
  const arch = String(cfg.architecture ?? '');
  const args = (cfg.model_args ?? {}) as Json;
  const { pre, labelNames } = timmHubCfg(cfg);
  const preset = SWIN_PRESETS.lookup(arch);
  if (!preset && !arch.startsWith('swin_')) throw new ModelError(`${name}: timm architecture "${arch}" is not a Swin this tool knows`);
  if (!preset) {
    const missing = ['embed_dim', 'depths', 'num_heads', 'window_size'].filter((k) => args[k] === undefined);
    if (missing.length) throw new ModelError(`${name}: "${arch}" is not a preset, so model_args must give ${missing.join(', ')}`);
  }
  // Variants whose forward differs; refusing them beats silently wrong outputs.
  if (args.head_dim !== undefined && args.head_dim !== null) throw new ModelError(`${name}: model_args.head_dim is not supported`);
  if (args.always_partition === true) throw new ModelError(`${name}: model_args.always_partition is not supported`);
  refuseTimmLayers(args, name);
  const globalPool = String(args.global_pool ?? cfg.global_pool ?? 'avg');
  if (globalPool !== 'avg') throw new ModelError(`${name}: global_pool "${globalPool}" is not supported (avg)`);
  const base = preset ?? SWIN_PRESETS.lookup('swin_tiny_patch4_window7_224')!;
  const inputSize = Array.isArray(pre.input_size) ? pre.input_size as unknown[] : null;
  const imgSize: [number, number] = args.img_size !== undefined ? pair(args.img_size, 'img_size')
    : inputSize ? [num(inputSize[1], 'input_size'), num(inputSize[2], 'input_size')] : base.imgSize;
  const depths = args.depths !== undefined ? intList(args.depths, 'depths') : base.depths;
  const inChans = channelsOf(args.in_chans !== undefined ? num(args.in_chans, 'in_chans')
    : inputSize ? num(inputSize[0], 'input_size') : base.inChans, `${name}: in_chans`);
  const labels = Array.isArray(labelNames) ? labelNames.map(String) : null;
  const numClasses = cfg.num_classes !== undefined ? num(cfg.num_classes, 'num_classes')
    : args.num_classes !== undefined ? num(args.num_classes, 'num_classes') : labels?.length ?? base.numClasses;
  return validateSwinConfig({
    ...base,
    name,
    imgSize,
    patchSize: args.patch_size !== undefined ? square(args.patch_size, 'patch_size', name) : base.patchSize,
    inChans,
    embedDim: args.embed_dim !== undefined ? num(args.embed_dim, 'embed_dim') : base.embedDim,
    depths,
    numHeads: args.num_heads !== undefined ? intList(args.num_heads, 'num_heads') : base.numHeads,
    windowSize: timmWindows(args.window_size ?? base.windowSize[0], depths.length, name),
    mlpRatio: args.mlp_ratio !== undefined ? oneRatio(args.mlp_ratio, name) : base.mlpRatio,
    qkvBias: args.qkv_bias !== undefined ? Boolean(args.qkv_bias) : base.qkvBias,
    numClasses,
    windowRule: 'timm',
    preprocess: preprocessFromTimm(pre, imgSize, inChans, name),
    labels: labels && labels.length === numClasses ? labels : null,
  });
}
