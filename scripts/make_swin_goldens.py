#!/usr/bin/python3
"""Build tiny, randomly initialised torchvision Swin Transformers and write the Swin test fixtures.

Outputs, under test/fixtures/swin/NAME/:
  golden.json                       config, inputs (integers: value = data / steps), and per window rule
                                    the reference logits, pooled features and one block's window
                                    attention (first image)
  torchvision.pth                   torchvision's state dict (with its relative_position_index buffers)
  timm/{config.json,model.safetensors}          timm >= 0.9 names, timm's config.json
  microsoft.pth                     {"model": ...} with the original repository's names (timm < 0.9: patch
                                    merging at the end of a stage, `head`), its index and mask buffers
  hf/{config.json,preprocessor_config.json,model.safetensors}   transformers' names, I64 index buffers

The three implementations agree on where windows go whenever each stage's map is a multiple of its window
and no smaller than it; the specs below also leave that ground, on purpose:
  swin_shift  64 px, patch 4, window 4, three stages: shifted stages, no padding: one reference for all
  swin_pad    40 px, window 3: both stages padded (10 -> 12, 5 -> 6) and shifted.  torchvision and
              transformers pad, then shift; timm shifts, then pads.  torchvision's reference is its own
              forward; timm's order is reproduced below from torchvision's modules (timm_block), a
              re-statement of timm's SwinTransformerBlock._attn that is checked against torchvision
              wherever the two orders must agree.
  swin_small  32 px, window 4: the last stage's map (2x2) is smaller than the window.  torchvision pads
              it to the window; timm shrinks the window to the map (and so has a 3x3 bias table).  The
              timm reference is torchvision's own forward with that stage's windows set to timm's size.
  swin_eps    transformers' layer_norm_eps (1e-3 here) for the block and final norms, LayerNorm's default
              1e-5 for the patch-embedding and patch-merging norms, with activations small enough that
              either eps matters.

Deterministic: all randomness from numpy Generators with fixed seeds.  References are computed in float64
from the float32 weights.  Run with Debian's interpreter (torch 1.13 / torchvision 0.14):
    /usr/bin/python3 scripts/make_swin_goldens.py
"""
import copy
import functools
import hashlib
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models.swin_transformer as tvswin
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "test", "fixtures", "swin")
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
BATCH = 2
INPUT_STEPS = 16

SPECS = [
    dict(name="swin_shift", seed=101, image=64, patch=4, embed=8, depths=[2, 2, 1], heads=[2, 4, 8],
         window=4, mlp_ratio=2.5, classes=5, eps=1e-5, patch_eps=1e-5, small=False,
         layouts=["torchvision", "timm", "microsoft", "hf"], attention=(1, 1)),
    dict(name="swin_pad", seed=202, image=40, patch=4, embed=8, depths=[2, 2], heads=[2, 4],
         window=3, mlp_ratio=4.0, classes=4, eps=1e-5, patch_eps=1e-5, small=False,
         layouts=["torchvision", "timm", "microsoft", "hf"], attention=(0, 1)),
    dict(name="swin_small", seed=303, image=32, patch=4, embed=8, depths=[2, 2, 1], heads=[2, 2, 4],
         window=4, mlp_ratio=2.0, classes=3, eps=1e-5, patch_eps=1e-5, small=True,
         layouts=["torchvision", "timm", "microsoft"], attention=(2, 0)),
    dict(name="swin_eps", seed=404, image=32, patch=4, embed=8, depths=[2, 2], heads=[2, 4],
         window=4, mlp_ratio=2.0, classes=3, eps=1e-3, patch_eps=1e-5, small=False, quiet=True,
         layouts=["torchvision", "hf"], attention=(0, 1)),
]

LABELS = ["alpha", "b\u00eata", "gamma \"g\"", "delta", "epsilon"]


# ----------------------------------------------------------------------------
# files

def ensure_dir(path):
    os.makedirs(path, exist_ok=True)


def write_json(path, obj, indent=2):
    ensure_dir(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent, separators=None if indent else (",", ":"))
        f.write("\n")


def safetensors_bytes(tensors):
    """name -> numpy array (float32 or int64), laid out in name order, header padded to 8 bytes."""
    kinds = {np.dtype(np.float32): ("F32", "<f4"), np.dtype(np.int64): ("I64", "<i8")}
    header = OrderedDict([("__metadata__", {"format": "pt"})])
    chunks, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        tag, little = kinds[arr.dtype]
        raw = arr.astype(little).tobytes()
        header[name] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def safetensors_read(path):
    """Read back what safetensors_bytes wrote (an independent check of the file)."""
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        dt = {"F32": "<f4", "I64": "<i8"}[e["dtype"]]
        out[name] = np.frombuffer(buf[8 + n + b:8 + n + end], dtype=dt).reshape(e["shape"])
    return out


def write_safetensors(path, tensors):
    ensure_dir(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(safetensors_bytes(tensors))


def rounded(a):
    """Seven significant digits: float32's precision, far below the tests' tolerances, half the JSON."""
    return [float("%.7g" % v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


# ----------------------------------------------------------------------------
# the torchvision model

def build_model(spec):
    norm = functools.partial(nn.LayerNorm, eps=spec["eps"])
    model = SwinTransformer(
        patch_size=[spec["patch"], spec["patch"]], embed_dim=spec["embed"], depths=spec["depths"],
        num_heads=spec["heads"], window_size=[spec["window"], spec["window"]], mlp_ratio=spec["mlp_ratio"],
        stochastic_depth_prob=0.0, num_classes=spec["classes"], norm_layer=norm)
    # transformers builds the patch-embedding and patch-merging norms with LayerNorm's default eps.
    for i, m in enumerate(model.features):
        if i == 0:
            m[2].eps = spec["patch_eps"]
        elif isinstance(m, tvswin.PatchMerging):
            m.norm.eps = spec["patch_eps"]
    rng = np.random.default_rng(spec["seed"])
    # swin_eps keeps every norm's input at variance ~1e-3: small gains on the norms that open a stage's
    # stream, small residual branches.
    small = 0.03 if spec.get("quiet") else 1.0
    sd = OrderedDict()
    for name, t in model.state_dict().items():
        shape = tuple(t.shape)
        if t.dtype == torch.int64:
            sd[name] = t
            continue
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1

        def randn(std, mean=0.0):
            return torch.from_numpy((mean + std * rng.standard_normal(shape)).astype(np.float32))

        leaf = name.split(".")[-1]
        # The norms that start the residual stream of a stage: the patch embedding's and each merging's.
        opens_stream = name.startswith("features.0.2.") or (".norm." in name and name.startswith("features."))
        if "norm" in name or opens_stream:
            scale = small if opens_stream else 1.0
            v = randn(0.2 * scale, scale) if leaf == "weight" else randn(0.1 * scale)
        elif name.endswith("relative_position_bias_table"):
            # Large enough that a wrong index or a transposed table shows in every output.
            v = randn(0.7)
        elif name.endswith("attn.proj.weight") or name.endswith("mlp.3.weight"):
            v = randn(small / math.sqrt(fan_in))
        elif name.endswith("attn.proj.bias") or name.endswith("mlp.3.bias"):
            v = randn(0.1 * small)
        elif name.endswith("qkv.weight"):
            v = randn(1.3 / math.sqrt(fan_in))
        elif name == "head.weight":
            v = randn(2.0 / math.sqrt(fan_in))
        elif name == "head.bias":
            v = randn(0.5)
        elif leaf == "weight":
            v = randn(1.0 / math.sqrt(fan_in))
        elif leaf == "bias":
            v = randn(0.1)
        else:
            raise KeyError("no init rule for " + name)
        sd[name] = v
    model.load_state_dict(sd, strict=True)
    return model.eval()


def shrink_small_maps(model, spec, rng):
    """timm's rule on torchvision's modules: a stage whose map is no larger than the window gets a window of
    the map's size (with a bias table of that size), so torchvision then runs exactly what timm runs."""
    m = copy.deepcopy(model)
    grid = spec["image"] // spec["patch"]
    for stage in range(len(spec["depths"])):
        size = grid // 2 ** stage
        if size > spec["window"]:
            continue
        for blk in m.features[2 * stage + 1]:
            a = blk.attn
            a.window_size = [size, size]
            table = rng.standard_normal(((2 * size - 1) ** 2, a.num_heads)).astype(np.float32) * 0.7
            a.relative_position_bias_table = nn.Parameter(torch.from_numpy(table))
            a.define_relative_position_index()
    return m.eval()


def tv_state(model):
    return OrderedDict((k, v.detach().cpu().numpy().copy()) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------
# references

class Recorder:
    """Stands in for torchvision's `F` inside its swin module and keeps every softmax it computes: the window
    attention probabilities [B*nW, heads, N, N] of each block, in block order."""

    def __init__(self):
        self.probs = []

    def __getattr__(self, name):
        return getattr(F, name)

    def softmax(self, x, dim=None, **kw):
        y = F.softmax(x, dim=dim, **kw)
        self.probs.append(y.detach().clone())
        return y


def block_index(spec, stage, block):
    return sum(spec["depths"][:stage]) + block


@torch.no_grad()
def run_torchvision(model, x, spec):
    rec = Recorder()
    saved = tvswin.F
    tvswin.F = rec
    try:
        feats = model.features(x)
        logits = model(x)
    finally:
        tvswin.F = saved
    avg = model.flatten(model.avgpool(model.permute(model.norm(feats))))
    assert float((model.head(avg) - logits).abs().max()) == 0.0
    probs = rec.probs[len(rec.probs) // 2:]  # the second forward's
    return dict(logits=logits, avg=avg, probs=probs)


def timm_mask(hp, wp, window, shift):
    """timm's SW-MSA mask over the padded map: bands (0, -w), (-w, -s), (-s, None) per axis."""
    img = torch.zeros((1, hp, wp, 1), dtype=torch.float64)
    cnt = 0
    for h in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for w in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            img[:, h[0]:h[1], w[0]:w[1], :] = cnt
            cnt += 1
    win = img.view(1, hp // window[0], window[0], wp // window[1], window[1], 1)
    win = win.permute(0, 1, 3, 2, 4, 5).reshape(-1, window[0] * window[1])
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def timm_block(blk, x, nominal, probs):
    """One torchvision block's weights run in timm's order: norm1, cyclic shift, pad, window attention
    (bias + mask), reverse, crop, shift back, residual; then the MLP."""
    B, H, W, C = x.shape
    a = blk.attn
    target = a.window_size
    window = [min(n, t) for n, t in zip(nominal, target)]
    shift = [0 if n <= t else s for n, t, s in zip(nominal, window, a.shift_size)]
    assert window == list(target), "timm_block expects torchvision's window to be timm's already"
    h = blk.norm1(x)
    if any(shift):
        h = torch.roll(h, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    ph, pw = (-H) % window[0], (-W) % window[1]
    h = F.pad(h, (0, 0, 0, pw, 0, ph))
    hp, wp = H + ph, W + pw
    nw, n = (hp // window[0]) * (wp // window[1]), window[0] * window[1]
    win = h.view(B, hp // window[0], window[0], wp // window[1], window[1], C)
    win = win.permute(0, 1, 3, 2, 4, 5).reshape(B * nw, n, C)
    heads = a.num_heads
    qkv = F.linear(win, a.qkv.weight, a.qkv.bias).reshape(B * nw, n, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (C // heads) ** -0.5, qkv[1], qkv[2]
    s = q @ k.transpose(-2, -1) + a.get_relative_position_bias()
    if any(shift):
        s = (s.view(B, nw, heads, n, n) + timm_mask(hp, wp, window, shift).unsqueeze(1).unsqueeze(0)).view(-1, heads, n, n)
    p = torch.softmax(s, dim=-1)
    probs.append(p)
    o = F.linear((p @ v).transpose(1, 2).reshape(B * nw, n, C), a.proj.weight, a.proj.bias)
    o = o.view(B, hp // window[0], wp // window[1], window[0], window[1], C).permute(0, 1, 3, 2, 4, 5).reshape(B, hp, wp, C)
    o = o[:, :H, :W, :]
    if any(shift):
        o = torch.roll(o, shifts=(shift[0], shift[1]), dims=(1, 2))
    x = x + o
    return x + blk.mlp(blk.norm2(x))


@torch.no_grad()
def run_timm_order(model, x, spec):
    probs = []
    h = model.features[0](x)
    grid = spec["image"] // spec["patch"]
    for stage in range(len(spec["depths"])):
        if stage > 0:
            h = model.features[2 * stage](h)
        nominal = [grid // 2 ** stage] * 2
        for blk in model.features[2 * stage + 1]:
            h = timm_block(blk, h, nominal, probs)
    avg = model.flatten(model.avgpool(model.permute(model.norm(h))))
    return dict(logits=model.head(avg), avg=avg, probs=probs)


def max_err(a, b):
    return float((a["logits"] - b["logits"]).abs().max())


def reference_json(out, spec, stage, block):
    p = out["probs"][block_index(spec, stage, block)]
    nw = p.shape[0] // BATCH
    first = p.view(BATCH, nw, *p.shape[1:])[0]
    return OrderedDict([
        ("logits", rounded(out["logits"])), ("avg", rounded(out["avg"])),
        ("attention", OrderedDict([("stage", stage), ("block", block), ("shape", list(first.shape)),
                                   ("data", rounded(first))])),
    ])


# ----------------------------------------------------------------------------
# naming schemes, all from torchvision's state dict

def to_timm(sd, spec):
    """timm >= 0.9: layers.S.downsample opens stage S; head.fc; buffers are not persistent."""
    out = OrderedDict()
    out["patch_embed.proj.weight"], out["patch_embed.proj.bias"] = sd["features.0.0.weight"], sd["features.0.0.bias"]
    out["patch_embed.norm.weight"], out["patch_embed.norm.bias"] = sd["features.0.2.weight"], sd["features.0.2.bias"]
    renames = [("mlp.0.", "mlp.fc1."), ("mlp.3.", "mlp.fc2.")]
    for stage, depth in enumerate(spec["depths"]):
        if stage > 0:
            for leaf in ("reduction.weight", "norm.weight", "norm.bias"):
                out["layers.%d.downsample.%s" % (stage, leaf)] = sd["features.%d.%s" % (2 * stage, leaf)]
        for b in range(depth):
            src = "features.%d.%d." % (2 * stage + 1, b)
            for k, v in sd.items():
                if not k.startswith(src) or k.endswith("relative_position_index"):
                    continue
                rest = k[len(src):]
                for old, new in renames:
                    rest = rest.replace(old, new)
                out["layers.%d.blocks.%d.%s" % (stage, b, rest)] = v
    out["norm.weight"], out["norm.bias"] = sd["norm.weight"], sd["norm.bias"]
    out["head.fc.weight"], out["head.fc.bias"] = sd["head.weight"], sd["head.bias"]
    return out


def to_microsoft(timm_sd, sd, spec):
    """The original repository (and timm < 0.9): patch merging closes stage S-1 as layers.(S-1).downsample,
    `head`; each block keeps relative_position_index [N, N] and shifted blocks their attn_mask [nW, N, N]."""
    out = OrderedDict()
    for k, v in timm_sd.items():
        if ".downsample." in k:
            stage = int(k.split(".")[1])
            k = "layers.%d.%s" % (stage - 1, k.split(".", 2)[2])
        elif k.startswith("head.fc."):
            k = "head." + k[len("head.fc."):]
        out[k] = v
    for stage, depth in enumerate(spec["depths"]):
        for b in range(depth):
            idx = sd["features.%d.%d.attn.relative_position_index" % (2 * stage + 1, b)]
            n = int(round(math.sqrt(idx.size)))
            out["layers.%d.blocks.%d.attn.relative_position_index" % (stage, b)] = idx.reshape(n, n)
            if b % 2 == 1:
                # A stand-in of the right shape: the loader must drop it, whatever it holds.
                out["layers.%d.blocks.%d.attn_mask" % (stage, b)] = np.full((4, n, n), -100.0, dtype=np.float32)
    return out


HF_BLOCK = [("norm1.", "layernorm_before."), ("norm2.", "layernorm_after."),
            ("attn.relative_position_bias_table", "attention.self.relative_position_bias_table"),
            ("attn.proj.", "attention.output.dense."), ("mlp.0.", "intermediate.dense."),
            ("mlp.3.", "output.dense.")]


def to_hf(sd, spec):
    """transformers' SwinForImageClassification: swin.embeddings, swin.encoder.layers.S.blocks.B (query, key,
    value apart), layers.S.downsample closing stage S, swin.layernorm, classifier; I64 index buffers."""
    out = OrderedDict()
    e = "swin.embeddings."
    out[e + "patch_embeddings.projection.weight"] = sd["features.0.0.weight"]
    out[e + "patch_embeddings.projection.bias"] = sd["features.0.0.bias"]
    out[e + "norm.weight"], out[e + "norm.bias"] = sd["features.0.2.weight"], sd["features.0.2.bias"]
    for stage, depth in enumerate(spec["depths"]):
        C = spec["embed"] * 2 ** stage
        if stage > 0:
            for leaf in ("reduction.weight", "norm.weight", "norm.bias"):
                out["swin.encoder.layers.%d.downsample.%s" % (stage - 1, leaf)] = sd["features.%d.%s" % (2 * stage, leaf)]
        for b in range(depth):
            src, dst = "features.%d.%d." % (2 * stage + 1, b), "swin.encoder.layers.%d.blocks.%d." % (stage, b)
            for k, v in sd.items():
                if not k.startswith(src):
                    continue
                rest = k[len(src):]
                if rest.startswith("attn.qkv."):
                    kind = rest.split(".")[-1]
                    for j, part in enumerate(("query", "key", "value")):
                        out[dst + "attention.self.%s.%s" % (part, kind)] = v[j * C:(j + 1) * C].copy()
                    continue
                if rest == "attn.relative_position_index":
                    out[dst + "attention.self.relative_position_index"] = v.reshape(int(round(math.sqrt(v.size))), -1)
                    continue
                for old, new in HF_BLOCK:
                    if rest.startswith(old):
                        rest = new + rest[len(old):]
                        break
                else:
                    raise KeyError(k)
                out[dst + rest] = v
    out["swin.layernorm.weight"], out["swin.layernorm.bias"] = sd["norm.weight"], sd["norm.bias"]
    out["classifier.weight"], out["classifier.bias"] = sd["head.weight"], sd["head.bias"]
    return out


def from_timm(timm_sd, spec, like):
    """Back to torchvision's names (the inverse of to_timm), to check the timm file against torchvision."""
    out = OrderedDict()
    for k, v in like.state_dict().items():
        if k.endswith("relative_position_index"):
            out[k] = v
    inverse = {}
    for k in to_timm({n: n for n in like.state_dict()}, spec).items():
        inverse[k[0]] = k[1]
    for k, v in timm_sd.items():
        out[inverse[k]] = torch.from_numpy(np.array(v))
    return out


# ----------------------------------------------------------------------------
# config files

def hf_config(spec):
    labels = LABELS[:spec["classes"]]
    return OrderedDict([
        ("model_type", "swin"), ("architectures", ["SwinForImageClassification"]),
        ("image_size", spec["image"]), ("patch_size", spec["patch"]), ("num_channels", 3),
        ("embed_dim", spec["embed"]), ("depths", spec["depths"]), ("num_heads", spec["heads"]),
        ("window_size", spec["window"]), ("mlp_ratio", spec["mlp_ratio"]), ("qkv_bias", True),
        ("hidden_act", "gelu"), ("use_absolute_embeddings", False), ("layer_norm_eps", spec["eps"]),
        ("encoder_stride", 32), ("hidden_size", spec["embed"] * 2 ** (len(spec["depths"]) - 1)),
        ("id2label", OrderedDict((str(i), l) for i, l in enumerate(labels))),
        ("label2id", OrderedDict((l, i) for i, l in enumerate(labels))),
    ])


def hf_preprocessor(spec):
    return OrderedDict([
        ("do_resize", True), ("size", OrderedDict([("height", spec["image"]), ("width", spec["image"])])),
        ("resample", 3), ("do_rescale", True), ("rescale_factor", 1 / 255), ("do_normalize", True),
        ("image_mean", MEAN), ("image_std", STD), ("image_processor_type", "ViTImageProcessor"),
    ])


def timm_config(spec):
    return OrderedDict([
        ("architecture", "swin_tiny_patch4_window7_224"), ("num_classes", spec["classes"]),
        ("num_features", spec["embed"] * 2 ** (len(spec["depths"]) - 1)), ("global_pool", "avg"),
        ("model_args", OrderedDict([
            ("img_size", spec["image"]), ("patch_size", spec["patch"]), ("embed_dim", spec["embed"]),
            ("depths", spec["depths"]), ("num_heads", spec["heads"]), ("window_size", spec["window"]),
            ("mlp_ratio", spec["mlp_ratio"]),
        ])),
        ("pretrained_cfg", OrderedDict([
            ("input_size", [3, spec["image"], spec["image"]]), ("interpolation", "bicubic"), ("crop_pct", 0.9),
            ("crop_mode", "center"), ("mean", MEAN), ("std", STD), ("num_classes", spec["classes"]),
            ("classifier", "head.fc"),
        ])),
        ("label_names", LABELS[:spec["classes"]]),
    ])


# ----------------------------------------------------------------------------

def rel(path):
    return os.path.relpath(path, ROOT).replace(os.sep, "/")


def float64_model(model):
    return copy.deepcopy(model).double().eval()


def sensitivity(m64, x, ref, spec, report):
    """How far plausible mistakes move the logits: each must be far above the tests' tolerance."""
    def moved(edit):
        m = copy.deepcopy(m64)
        with torch.no_grad():
            edit(m)
        return float((m(x) - ref["logits"]).abs().max())

    C = spec["embed"]

    def swap_merge(m):
        w = m.features[2].reduction.weight
        w.copy_(torch.cat([w[:, :C], w[:, 2 * C:3 * C], w[:, C:2 * C], w[:, 3 * C:]], 1))

    def transpose_table(m):
        t = m.features[1][0].attn.relative_position_bias_table
        s = 2 * spec["window"] - 1
        t.copy_(t.view(s, s, -1).transpose(0, 1).reshape(s * s, -1))

    report["merge x1<->x2 max |dlogit|"] = moved(swap_merge)
    report["bias table transposed (block 0) max |dlogit|"] = moved(transpose_table)
    for k in ("merge x1<->x2 max |dlogit|", "bias table transposed (block 0) max |dlogit|"):
        assert report[k] > 1e-2, (spec["name"], k, report[k])


def generate(spec, report):
    name = spec["name"]
    sdir = os.path.join(FIX, name)
    ensure_dir(sdir)
    model = build_model(spec)
    sd = tv_state(model)
    m64 = float64_model(model)
    rng = np.random.default_rng(spec["seed"] + 1)
    # Multiples of 1/16 (exact in float32), stored as integers: the inputs are most of a golden's size.
    steps = np.rint(rng.standard_normal((BATCH, 3, spec["image"], spec["image"])) * INPUT_STEPS)
    x32 = (steps / INPUT_STEPS).astype(np.float32)
    x = torch.from_numpy(x32.astype(np.float64))
    stage, block = spec["attention"]

    tv = run_torchvision(m64, x, spec)
    references = OrderedDict([("torchvision", reference_json(tv, spec, stage, block))])
    timm_model = shrink_small_maps(model, spec, np.random.default_rng(spec["seed"] + 2)) if spec["small"] else model
    t64 = float64_model(timm_model)
    timm_ref = run_timm_order(t64, x, spec)
    if spec["small"]:
        # No stage is both padded and shifted: timm's order must give what torchvision's forward gives.
        same = run_torchvision(t64, x, spec)
        report["timm order vs torchvision (shrunk windows)"] = max_err(timm_ref, same)
        assert report["timm order vs torchvision (shrunk windows)"] < 1e-10
        report["shrunk vs padded windows max |dlogit|"] = max_err(timm_ref, tv)
    else:
        report["timm order vs torchvision max |dlogit|"] = max_err(timm_ref, tv)
        if name == "swin_pad":
            assert report["timm order vs torchvision max |dlogit|"] > 1e-2, "the two orders should differ here"
        else:
            assert report["timm order vs torchvision max |dlogit|"] < 1e-10
    if name in ("swin_pad", "swin_small"):
        references["timm"] = reference_json(timm_ref, spec, stage, block)

    timm_sd = to_timm(tv_state(timm_model), spec)
    layouts = OrderedDict()
    for layout in spec["layouts"]:
        rule = "timm" if layout in ("timm", "microsoft") else layout
        # transformers windows these specs as torchvision does (pad, then shift; no map below the window).
        ref = "timm" if rule == "timm" and "timm" in references else "torchvision"
        if layout == "torchvision":
            path = os.path.join(sdir, "torchvision.pth")
            torch.save(model.state_dict(), path)
            back = build_model(spec)
            back.load_state_dict(torch.load(path))
            report["check torchvision.pth"] = max_err(run_torchvision(float64_model(back), x, spec), tv)
            layouts[layout] = OrderedDict([("weights", rel(path)), ("rule", rule), ("reference", ref)])
        elif layout == "timm":
            d = os.path.join(sdir, "timm")
            write_json(os.path.join(d, "config.json"), timm_config(spec))
            write_safetensors(os.path.join(d, "model.safetensors"), timm_sd)
            back = copy.deepcopy(timm_model)
            back.load_state_dict(from_timm(safetensors_read(os.path.join(d, "model.safetensors")), spec, timm_model))
            report["check timm/model.safetensors"] = max_err(run_timm_order(float64_model(back), x, spec), timm_ref)
            layouts[layout] = OrderedDict([("dir", rel(d)), ("rule", rule), ("reference", ref)])
        elif layout == "microsoft":
            path = os.path.join(sdir, "microsoft.pth")
            ms = to_microsoft(timm_sd, tv_state(timm_model), spec)
            torch.save({"model": OrderedDict((k, torch.from_numpy(np.asarray(v))) for k, v in ms.items())}, path)
            layouts[layout] = OrderedDict([("weights", rel(path)), ("rule", rule), ("reference", ref)])
        elif layout == "hf":
            d = os.path.join(sdir, "hf")
            write_json(os.path.join(d, "config.json"), hf_config(spec))
            write_json(os.path.join(d, "preprocessor_config.json"), hf_preprocessor(spec))
            write_safetensors(os.path.join(d, "model.safetensors"), to_hf(sd, spec))
            layouts[layout] = OrderedDict([("dir", rel(d)), ("rule", rule), ("reference", ref)])
    for k, v in report.items():
        if k.startswith("check "):
            assert v < 1e-10, (name, k, v)

    golden = OrderedDict([
        ("name", name),
        ("config", OrderedDict([
            ("imgSize", spec["image"]), ("patchSize", spec["patch"]), ("embedDim", spec["embed"]),
            ("depths", spec["depths"]), ("numHeads", spec["heads"]), ("windowSize", spec["window"]),
            ("mlpRatio", spec["mlp_ratio"]), ("numClasses", spec["classes"]), ("layerNormEps", spec["eps"]),
            ("patchNormEps", spec["patch_eps"]), ("mean", MEAN), ("std", STD),
        ])),
        ("inputs", OrderedDict([("shape", list(x32.shape)), ("steps", INPUT_STEPS),
                                ("data", [int(v) for v in steps.reshape(-1)])])),
        ("references", references),
        ("layouts", layouts),
    ])
    write_json(os.path.join(sdir, "golden.json"), golden, indent=None)

    report["max |logit|"] = float(tv["logits"].abs().max())
    sensitivity(m64, x, tv, spec, report)
    if spec.get("quiet"):
        for label, eps_patch, eps_block in (("patch norms at layer_norm_eps", spec["eps"], spec["eps"]),
                                            ("block norms at 1e-5", spec["patch_eps"], spec["patch_eps"])):
            m = copy.deepcopy(m64)
            for mod in m.modules():
                if isinstance(mod, nn.LayerNorm):
                    mod.eps = eps_block
            m.features[0][2].eps = eps_patch
            for f in m.features:
                if isinstance(f, tvswin.PatchMerging):
                    f.norm.eps = eps_patch
            with torch.no_grad():
                report["%s max |dlogit|" % label] = float((m(x) - tv["logits"]).abs().max())
            assert report["%s max |dlogit|" % label] > 1e-3, (label, report)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    reports = [(spec["name"], OrderedDict()) for spec in SPECS]
    for spec, (_, rep) in zip(SPECS, reports):
        generate(spec, rep)
    lines = []
    for name, rep in reports:
        lines.append("== " + name)
        lines += ["  %-48s %.3g" % kv for kv in rep.items()]
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(FIX) for f in fs)
    blobs = [(p, open(p, "rb").read()) for p in files]
    lines.append("== files (bytes, sha256 prefix)")
    lines += ["  %9d  %s  %s" % (len(b), hashlib.sha256(b).hexdigest()[:16], rel(p)) for p, b in blobs]
    lines.append("  %9d  total" % sum(len(b) for _, b in blobs))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
