import { ModelError } from '../errors.js';
import { INCEPTION_MEAN, INCEPTION_STD, validateConfig, type Interpolation, type Preprocess, type ViTConfig } from './config.js';
import { isPresetName, presetConfig, timmPreprocess } from './presets.js';

type Json = Record<string, unknown>;

const PIL_RESAMPLE: Record<number, Interpolation> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'bilinear', 5: 'bicubic' };

export function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelError(`config: ${what} must be a number, found ${JSON.stringify(v)}`);
  return v;
}

export function pair(v: unknown, what: string): [number, number] {
  if (Array.isArray(v) && v.length === 2) return [num(v[0], what), num(v[1], what)];
  const n = num(v, what);
  return [n, n];
}

export function triple(v: unknown, what: string): [number, number, number] {
  if (typeof v === 'number') return [v, v, v];
  if (!Array.isArray(v) || v.length !== 3) throw new ModelError(`config: ${what} must be 3 numbers, found ${JSON.stringify(v)}`);
  return [num(v[0], what), num(v[1], what), num(v[2], what)];
}

/** id2label {"0": "a", "1": "b"} → ["a", "b"], checking that the indices are exactly 0..n-1. */
export function labelsFromId2label(id2label: unknown): string[] | null {
  if (!id2label || typeof id2label !== 'object') return null;
  const entries = Object.entries(id2label as Record<string, unknown>);
  const labels: string[] = new Array(entries.length);
  for (const [k, v] of entries) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0 || i >= entries.length) throw new ModelError(`config: id2label has a bad index "${k}"`);
    labels[i] = String(v);
  }
  return labels;
}

/** Hugging Face's placeholder labels (LABEL_0, LABEL_1, ...) carry no information. */
export function meaningfulLabels(labels: string[] | null): string[] | null {
  return labels && labels.every((l, i) => l === `LABEL_${i}`) ? null : labels;
}

/**
 * A Hugging Face image processor config → our preprocessing. `imgSize` supplies the defaults of
 * ViTImageProcessor (resize to the model size, bilinear, mean = std = 0.5) for missing fields.
 */
export function preprocessFromHf(pp: Json | null, imgSize: [number, number]): Preprocess {
  const p = pp ?? {};
  const size = p.size as Json | number | undefined;
  let resize: Preprocess['resize'] = { height: imgSize[0], width: imgSize[1] };
  if (typeof size === 'number') resize = { shortestEdge: size };
  else if (size && typeof size === 'object') {
    if ('shortest_edge' in size) resize = { shortestEdge: num(size.shortest_edge, 'size.shortest_edge') };
    else resize = { height: num(size.height, 'size.height'), width: num(size.width, 'size.width') };
  }
  if (p.do_resize === false) resize = null;
  let crop: Preprocess['crop'] = null;
  if (p.do_center_crop === true) {
    const cs = p.crop_size as Json | number | undefined;
    const [h, w] = typeof cs === 'number' ? [cs, cs]
      : cs && typeof cs === 'object' ? [num(cs.height, 'crop_size.height'), num(cs.width, 'crop_size.width')]
        : imgSize;
    crop = { height: h, width: w };
  }
  const resample = p.resample === undefined ? 2 : num(p.resample, 'resample');
  const interpolation = PIL_RESAMPLE[resample];
  if (!interpolation) throw new ModelError(`preprocessor config: unknown resample ${resample}`);
  const normalize = p.do_normalize !== false;
  return {
    resize,
    crop,
    interpolation,
    rescale: p.do_rescale === false ? 1 : p.rescale_factor === undefined ? 1 / 255 : num(p.rescale_factor, 'rescale_factor'),
    mean: normalize ? (p.image_mean === undefined ? INCEPTION_MEAN : triple(p.image_mean, 'image_mean')) : [0, 0, 0],
    std: normalize ? (p.image_std === undefined ? INCEPTION_STD : triple(p.image_std, 'image_std')) : [1, 1, 1],
  };
}

/** A Hugging Face `config.json` (model_type vit or deit) plus its optional preprocessor config. */
export function fromHfConfig(cfg: Json, pp: Json | null, name: string): ViTConfig {
  const type = String(cfg.model_type ?? '');
  if (type !== 'vit' && type !== 'deit') {
    throw new ModelError(`${name}: model_type "${type}" is not a ViT (supported: vit, deit)`);
  }
  const act = cfg.hidden_act ?? 'gelu';
  if (act !== 'gelu') throw new ModelError(`${name}: hidden_act "${String(act)}" is not supported (exact gelu only)`);
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.map(String) : [];
  const classifier = archs.length === 0 || archs.some((a) => /ForImageClassification/.test(a));
  const labels = labelsFromId2label(cfg.id2label);
  const distilled = archs.some((a) => /WithTeacher/.test(a));
  const imgSize = pair(cfg.image_size ?? 224, 'image_size');
  const D = num(cfg.hidden_size ?? 768, 'hidden_size');
  return validateConfig({
    name,
    imgSize,
    patchSize: num(cfg.patch_size ?? 16, 'patch_size'),
    inChans: num(cfg.num_channels ?? 3, 'num_channels'),
    embedDim: D,
    depth: num(cfg.num_hidden_layers ?? 12, 'num_hidden_layers'),
    numHeads: num(cfg.num_attention_heads ?? 12, 'num_attention_heads'),
    mlpDim: num(cfg.intermediate_size ?? 4 * D, 'intermediate_size'),
    numClasses: classifier ? (labels?.length ?? 2) : 0,
    representationSize: null,
    qkvBias: cfg.qkv_bias !== false,
    // transformers' ViTConfig default is 1e-12.
    layerNormEps: num(cfg.layer_norm_eps ?? 1e-12, 'layer_norm_eps'),
    classToken: true,
    distilled,
    globalPool: 'token',
    fcNorm: false,
    preprocess: preprocessFromHf(pp, imgSize),
    labels: classifier ? meaningfulLabels(labels) : null,
  });
}

/** timm's pretrained_cfg preprocessing over a base (the preset's, or the defaults). */
export function preprocessFromTimm(pre: Json, imgSize: [number, number], base: Preprocess, name: string): Preprocess {
  const interp = String(pre.interpolation ?? 'bicubic') as Interpolation;
  if (!['nearest', 'bilinear', 'bicubic', 'lanczos'].includes(interp)) throw new ModelError(`${name}: interpolation "${interp}" is not supported`);
  const cropMode = String(pre.crop_mode ?? 'center');
  if (cropMode !== 'center' && cropMode !== 'squash') throw new ModelError(`${name}: crop_mode "${cropMode}" is not supported (center, squash)`);
  return timmPreprocess(imgSize, pre.crop_pct === undefined ? 0.9 : num(pre.crop_pct, 'crop_pct'), interp,
    pre.mean === undefined ? base.mean : triple(pre.mean, 'mean'), pre.std === undefined ? base.std : triple(pre.std, 'std'), cropMode);
}

/** A timm hub `config.json`: architecture (a preset, or vit_* fully described by model_args) + overrides. */
export function fromTimmConfig(cfg: Json, name: string): ViTConfig {
  const arch = String(cfg.architecture ?? '');
  const args = (cfg.model_args ?? {}) as Json;
  const pre = (cfg.pretrained_cfg ?? {}) as Json;
  if (!isPresetName(arch) && !arch.startsWith('vit_') && !arch.startsWith('deit_')) {
    throw new ModelError(`${name}: timm architecture "${arch}" is not a ViT this tool knows`);
  }
  // Variants whose forward differs from the plain ViT; refusing them beats silently wrong outputs.
  for (const k of ['no_embed_class', 'reg_tokens', 'class_token_as_register', 'init_values', 'pos_embed']) {
    if (args[k] && !(k === 'pos_embed' && args[k] === 'learn')) throw new ModelError(`${name}: model_args.${k} is not supported`);
  }
  const base = isPresetName(arch) ? presetConfig(arch) : presetConfig('vit_base_patch16_224');
  const D = args.embed_dim !== undefined ? num(args.embed_dim, 'embed_dim') : base.embedDim;
  const inputSize = Array.isArray(pre.input_size) ? pre.input_size as number[] : null;
  const imgSize: [number, number] = args.img_size !== undefined ? pair(args.img_size, 'img_size')
    : inputSize ? [num(inputSize[1], 'input_size'), num(inputSize[2], 'input_size')] : base.imgSize;
  const globalPool = String(args.global_pool ?? cfg.global_pool ?? base.globalPool);
  if (globalPool !== 'token' && globalPool !== 'avg') throw new ModelError(`${name}: global_pool "${globalPool}" is not supported (token, avg)`);
  const fcNorm = args.fc_norm === undefined || args.fc_norm === null ? globalPool === 'avg' : Boolean(args.fc_norm);
  const labels = Array.isArray(cfg.label_names) ? cfg.label_names.map(String) : null;
  const numClasses = cfg.num_classes !== undefined ? num(cfg.num_classes, 'num_classes')
    : args.num_classes !== undefined ? num(args.num_classes, 'num_classes') : labels?.length ?? base.numClasses;
  const repr = args.representation_size ?? args.pre_logits_size;
  const mlpDim = args.mlp_ratio !== undefined ? Math.round(D * num(args.mlp_ratio, 'mlp_ratio')) : args.embed_dim !== undefined ? 4 * D : base.mlpDim;
  return validateConfig({
    ...base,
    name,
    imgSize,
    patchSize: args.patch_size !== undefined ? num(args.patch_size, 'patch_size') : base.patchSize,
    embedDim: D,
    depth: args.depth !== undefined ? num(args.depth, 'depth') : base.depth,
    numHeads: args.num_heads !== undefined ? num(args.num_heads, 'num_heads') : base.numHeads,
    mlpDim,
    numClasses,
    representationSize: repr === undefined || repr === null ? base.representationSize : num(repr, 'representation_size'),
    qkvBias: args.qkv_bias !== undefined ? Boolean(args.qkv_bias) : base.qkvBias,
    layerNormEps: args.norm_eps !== undefined ? num(args.norm_eps, 'norm_eps') : base.layerNormEps,
    classToken: args.class_token !== undefined ? Boolean(args.class_token) : base.classToken,
    distilled: arch.includes('distilled') ? true : base.distilled,
    globalPool,
    fcNorm,
    preprocess: preprocessFromTimm(pre, imgSize, base.preprocess, name),
    labels: labels && labels.length === numClasses ? labels : null,
  });
}

/** Tell the two config.json dialects apart. */
export function configFromJson(cfg: Json, pp: Json | null, name: string): ViTConfig {
  if (typeof cfg.architecture === 'string' || cfg.pretrained_cfg !== undefined) return fromTimmConfig(cfg, name);
  if (cfg.model_type !== undefined) return fromHfConfig(cfg, pp, name);
  throw new ModelError(`${name}: config.json is neither a Hugging Face config (model_type) nor a timm one (architecture)`);
}
