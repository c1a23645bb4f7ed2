#!/usr/bin/python3
"""Checkpoint-format fixtures that scripts/make_goldens.py does not cover.

Outputs (under test/fixtures/weights/):
  evil_system.pth     torch.save zip whose pickle would call os.system (protocol 2, GLOBAL)
  evil_exec.pth       torch.save zip whose pickle would call builtins.exec (protocol 4, STACK_GLOBAL),
                      hidden after real tensors inside {"state_dict": ...}
  evil_legacy.pth     the same trick in the legacy (non-zip) torch.save format
  legacy.pth          eps32's timm state dict in the legacy format (its storage keys are memory addresses,
                      so this one file differs byte-wise between runs; its content does not)
  wrapped.pth         {"state_dict": {"module." + name: tensor}, "epoch", "optimizer", an int tensor}
  half.pth / bf16.pth odd40's timm state dict stored as float16 / bfloat16
  views.pth           f16/bf16/f64 tensors, transposed, permuted, sliced and shared views, int tensors
  views.json          what views.pth must read as (float32 values, C order)
  misc.npz            np.savez_compressed (deflate): f2, f8, Fortran-order and 0-d arrays
  misc.json           what misc.npz must read as
  zip64.npz           eps32's Google arrays in a zip whose central directory uses ZIP64 fields
  resample.json       torch goldens for position-embedding resampling (timm's resample_abs_pos_embed)
  resized.json        odd40 run at 40x64 (pos_embed resampled from 6x6 to 5x8): inputs and logits
  deit/timm/{config.json,model.safetensors}, deit/hf/{config.json,preprocessor_config.json,model.safetensors}
  deit.json           a small distilled DeiT: inputs and reference logits / features

Run with Debian's interpreter (torch 1.13 / torchvision 0.14) after make_goldens.py:
    /usr/bin/python3 scripts/make_weight_fixtures.py
"""
import builtins
import functools
import io
import json
import math
import os
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_goldens import read_safetensors, write_json, write_safetensors, ensure_dir  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "test", "fixtures")
OUT = os.path.join(FIX, "weights")
# Files the malicious pickles would create if anything ever ran them; the tests check they do not appear.
MARKERS = {
    "evil_system.pth": "/tmp/vit_pwned_system",
    "evil_exec.pth": "/tmp/vit_pwned_exec",
    "evil_legacy.pth": "/tmp/vit_pwned_legacy",
}


def rel(path):
    return os.path.relpath(path, ROOT).replace(os.sep, "/")


def tolist(a):
    if isinstance(a, torch.Tensor):
        a = a.detach().double().numpy()
    return np.asarray(a, dtype=np.float64).tolist()


def timm_state(name):
    """A fixture model's timm-named weights as float32 torch tensors."""
    w = read_safetensors(os.path.join(FIX, "models", name, "timm", "model.safetensors"))
    return OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in sorted(w.items()))


# ----------------------------------------------------------------------------
# malicious and legacy pickles

class RunsCommand:
    """Unpickling this calls os.system: the classic pickle exploit."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


class RunsCode:
    """Unpickling this calls builtins.exec on code that creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, ("open(%r, 'w').close()" % self.marker,))


def make_malicious():
    sd = timm_state("eps32")
    path = os.path.join(OUT, "evil_system.pth")
    torch.save({"model": RunsCommand(MARKERS["evil_system.pth"])}, path)
    path = os.path.join(OUT, "evil_exec.pth")
    wrapped = OrderedDict(list(sd.items())[:3])
    wrapped["zzz_payload"] = RunsCode(MARKERS["evil_exec.pth"])
    torch.save({"state_dict": wrapped}, path, pickle_protocol=4)
    path = os.path.join(OUT, "evil_legacy.pth")
    torch.save({"model": RunsCommand(MARKERS["evil_legacy.pth"])}, path, _use_new_zipfile_serialization=False)
    for f, marker in MARKERS.items():
        assert not os.path.exists(marker), marker


def make_torch_variants(report):
    sd = timm_state("eps32")
    path = os.path.join(OUT, "legacy.pth")
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    with open(path, "rb") as f:
        assert not f.read(4).startswith(b"PK"), "expected the legacy format"
    back = torch.load(path)
    report["legacy.pth round trip"] = max(float((back[k] - v).abs().max()) for k, v in sd.items())

    inner = OrderedDict(("module." + k, v) for k, v in sd.items())
    inner["module.fake_bn.num_batches_tracked"] = torch.tensor(17, dtype=torch.long)
    torch.save({"epoch": 3, "arch": "vit_test", "state_dict": inner,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1, 2]}]}},
               os.path.join(OUT, "wrapped.pth"))

    odd = timm_state("odd40")
    torch.save(OrderedDict((k, v.half()) for k, v in odd.items()), os.path.join(OUT, "half.pth"))
    torch.save(OrderedDict((k, v.bfloat16()) for k, v in odd.items()), os.path.join(OUT, "bf16.pth"))


def make_views():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(4, 6, generator=g)
    cube = torch.randn(2, 3, 4, generator=g)
    tensors = OrderedDict()
    tensors["f32"] = torch.randn(3, 2, generator=g)
    tensors["f16"] = torch.randn(5, generator=g).half()
    tensors["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    tensors["f64"] = torch.randn(2, 2, generator=g).double()
    tensors["transposed"] = base.t()                     # [6, 4], strides (1, 6)
    tensors["permuted"] = cube.permute(2, 0, 1)          # [4, 2, 3]
    tensors["sliced"] = base[1:, ::2]                    # storage offset 6, strides (6, 2)
    tensors["row"] = base[2]                             # shares base's storage, offset 12
    tensors["half_t"] = torch.randn(3, 4, generator=g).half().t()
    tensors["scalar"] = torch.tensor(2.5)
    tensors["empty"] = torch.zeros(0, 3)
    tensors["steps"] = torch.tensor(5, dtype=torch.long)  # integer: must be left out
    tensors["mask"] = torch.tensor([True, False])         # bool: must be left out
    assert not tensors["transposed"].is_contiguous() and not tensors["sliced"].is_contiguous()
    torch.save(tensors, os.path.join(OUT, "views.pth"))
    expect = OrderedDict()
    for k, v in tensors.items():
        if v.dtype in (torch.long, torch.bool):
            continue
        expect[k] = OrderedDict([("shape", list(v.shape)), ("data", tolist(v.float().contiguous().reshape(-1)))])
    write_json(os.path.join(OUT, "views.json"), OrderedDict([("tensors", expect), ("ignored", ["steps", "mask"])]))


# ----------------------------------------------------------------------------
# npz variants

def make_npz():
    rng = np.random.default_rng(11)
    arrays = OrderedDict()
    arrays["f4"] = rng.standard_normal((2, 3)).astype("<f4")
    arrays["f2"] = rng.standard_normal((4,)).astype("<f2")
    arrays["f8"] = rng.standard_normal((3, 1)).astype("<f8")
    arrays["fortran"] = np.asfortranarray(rng.standard_normal((2, 3, 4)).astype("<f4"))
    arrays["scalar"] = np.array(1.25, dtype="<f4")
    arrays["nested/name"] = rng.standard_normal((2,)).astype("<f4")
    assert arrays["fortran"].flags.f_contiguous and not arrays["fortran"].flags.c_contiguous
    path = os.path.join(OUT, "misc.npz")
    np.savez_compressed(path, **arrays)
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    expect = OrderedDict((k, OrderedDict([("shape", list(v.shape)), ("data", tolist(np.ascontiguousarray(v).reshape(-1)))]))
                         for k, v in arrays.items())
    write_json(os.path.join(OUT, "misc.json"), expect)


def write_zip64(path, members):
    """A stored zip whose central directory puts every size and offset in ZIP64 extra fields (as torch does
    for archives past 4 GiB), with a ZIP64 end record and locator."""
    buf = io.BytesIO()
    central = []
    for name, data in members:
        nb = name.encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = buf.tell()
        local_extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        buf.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc,
                              0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(local_extra)))
        buf.write(nb + local_extra + data)
        extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc,
                                   0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(extra), 0, 0, 0, 0, 0xFFFFFFFF)
                       + nb + extra)
    cd_start = buf.tell()
    for c in central:
        buf.write(c)
    cd_size = buf.tell() - cd_start
    eocd64 = buf.tell()
    n = len(members)
    buf.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_start))
    buf.write(struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1))
    buf.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def make_zip64():
    src = os.path.join(FIX, "models", "eps32", "google.npz")
    members = []
    with zipfile.ZipFile(src) as z:
        for info in z.infolist():
            members.append((info.filename, z.read(info)))
    path = os.path.join(OUT, "zip64.npz")
    write_zip64(path, members)
    with np.load(path) as a, np.load(src) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k])
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None


# ----------------------------------------------------------------------------
# position-embedding resampling goldens

def timm_resample(posemb, prefix, new_size, old_size):
    """What timm.layers.resample_abs_pos_embed computes (float32, bicubic, antialias=True)."""
    D = posemb.shape[-1]
    tok, grid = posemb[:, :prefix], posemb[:, prefix:]
    grid = grid.reshape(1, old_size[0], old_size[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_size, mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, D)
    return torch.cat([tok, grid], dim=1)


def make_resample(report):
    g = torch.Generator().manual_seed(3)
    cases = []
    for prefix, old, new, D in [(1, (3, 3), (5, 7), 8), (1, (6, 6), (4, 4), 8), (1, (4, 6), (6, 4), 8),
                                (2, (5, 4), (2, 9), 6), (1, (7, 7), (7, 7), 4), (0, (8, 3), (3, 5), 5)]:
        pos = torch.randn(1, prefix + old[0] * old[1], D, generator=g)
        out = timm_resample(pos, prefix, new, old)
        plain = F.interpolate(pos[:, prefix:].reshape(1, old[0], old[1], D).permute(0, 3, 1, 2), size=new,
                              mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, D)
        diff = float((plain - out[:, prefix:]).abs().max())
        report["resample %s->%s antialias vs plain bicubic" % (old, new)] = diff
        cases.append(OrderedDict([("prefix", prefix), ("from", list(old)), ("to", list(new)),
                                  ("input", OrderedDict([("shape", list(pos.shape)), ("data", tolist(pos.reshape(-1)))])),
                                  ("output", OrderedDict([("shape", list(out.shape)), ("data", tolist(out.reshape(-1)))]))]))
    write_json(os.path.join(OUT, "resample.json"), OrderedDict([("cases", cases)]), compact=True)


def make_resized(report):
    """odd40 (trained at 48x48, patch 8) run on 40x64 inputs, the way timm does it: pos_embed resampled once
    to the new 5x8 grid, then the usual forward through torchvision's own layers."""
    H, W = 40, 64
    sd = timm_state("odd40")
    w = {k: v.double() for k, v in sd.items()}
    pos = timm_resample(sd["pos_embed"], 1, (H // 8, W // 8), (6, 6)).double()
    rng = np.random.default_rng(99)
    x32 = rng.standard_normal((1, 3, H, W)).astype(np.float32)
    x = torch.from_numpy(x32.astype(np.float64))
    ref = torch.load(os.path.join(FIX, "models", "odd40", "torchvision.pth"))
    tv = VisionTransformer(image_size=48, patch_size=8, num_layers=3, num_heads=5, hidden_dim=40, mlp_dim=72,
                           num_classes=7, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6))
    tv.load_state_dict(ref)
    tv = tv.double().eval()
    with torch.no_grad():
        t = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=8)   # [B, D, 5, 8]
        t = t.flatten(2).transpose(1, 2)                                                     # [B, 40, D]
        t = torch.cat([w["cls_token"].expand(1, -1, -1), t], 1) + pos
        for layer in tv.encoder.layers:
            t = layer(t)
        t = tv.encoder.ln(t)
        logits = tv.heads(t[:, 0])
    report["resized odd40 max |logit|"] = float(logits.abs().max())
    write_json(os.path.join(OUT, "resized.json"), OrderedDict([
        ("model", "odd40"), ("imageSize", [H, W]),
        ("inputs", OrderedDict([("shape", list(x32.shape)), ("data", tolist(x32.reshape(-1)))])),
        ("logits", tolist(logits)), ("cls", tolist(t[:, 0])),
    ]), compact=True)


# ----------------------------------------------------------------------------
# a small distilled DeiT, written by hand around torchvision's encoder layers

DEIT = dict(name="deit24", seed=2425, image=32, patch=8, dim=24, heads=3, depth=2, mlp=48, classes=6, eps=1e-6,
            mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


class DistilledViT(nn.Module):
    """DeiT's distilled ViT: [cls, dist, patches] + pos_embed → encoder; logits = mean of the two heads."""

    def __init__(self, s):
        super().__init__()
        norm = functools.partial(nn.LayerNorm, eps=s["eps"])
        self.tv = VisionTransformer(image_size=s["image"], patch_size=s["patch"], num_layers=s["depth"],
                                    num_heads=s["heads"], hidden_dim=s["dim"], mlp_dim=s["mlp"],
                                    num_classes=s["classes"], norm_layer=norm)
        n = (s["image"] // s["patch"]) ** 2
        self.dist_token = nn.Parameter(torch.zeros(1, 1, s["dim"]))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 2, s["dim"]))
        self.head_dist = nn.Linear(s["dim"], s["classes"])

    def features(self, x):
        t = self.tv._process_input(x)                                         # [B, N, D]
        B = t.shape[0]
        t = torch.cat([self.tv.class_token.expand(B, -1, -1), self.dist_token.expand(B, -1, -1), t], 1)
        t = t + self.pos_embed
        for layer in self.tv.encoder.layers:
            t = layer(t)
        return self.tv.encoder.ln(t)

    def forward(self, x):
        t = self.features(x)
        return (self.tv.heads.head(t[:, 0]) + self.head_dist(t[:, 1])) / 2


def init_deit(model, s):
    rng = np.random.default_rng(s["seed"])
    D, M, P = s["dim"], s["mlp"], s["patch"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split(".")
            if name.endswith("pos_embedding"):
                continue  # torchvision's own (N+1) table is unused: pos_embed covers both prefix tokens
            if any(x in ("ln_1", "ln_2", "ln") for x in leaf):
                v = (1.0 if leaf[-1] == "weight" else 0.0) + (0.2 if leaf[-1] == "weight" else 0.1) * rng.standard_normal(p.shape)
            elif name.endswith("conv_proj.weight"):
                v = rng.standard_normal(p.shape) / math.sqrt(3 * P * P)
            elif leaf[-1] == "weight" and p.dim() == 2:
                v = rng.standard_normal(p.shape) * 1.2 / math.sqrt(p.shape[1])
            else:
                v = 0.5 * rng.standard_normal(p.shape)
            p.copy_(torch.from_numpy(v.astype(np.float32)))
    return model.eval()


def copy_linear(out, src, pairs):
    """out[dst.weight / dst.bias] = src[name.weight / name.bias] for each (dst, name)."""
    for dst, name in pairs:
        for kind in ("weight", "bias"):
            out[dst + "." + kind] = src[name + "." + kind]


def deit_timm_names(model, s):
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out = OrderedDict()
    out["cls_token"] = sd["tv.class_token"]
    out["dist_token"] = sd["dist_token"]
    out["pos_embed"] = sd["pos_embed"]
    pairs = [("patch_embed.proj", "tv.conv_proj")]
    for i in range(s["depth"]):
        a, b = "tv.encoder.layers.encoder_layer_%d." % i, "blocks.%d." % i
        pairs += [(b + dst, a + src) for src, dst in [("ln_1", "norm1"), ("ln_2", "norm2"), ("mlp.0", "mlp.fc1"),
                                                      ("self_attention.out_proj", "attn.proj"), ("mlp.3", "mlp.fc2")]]
        out[b + "attn.qkv.weight"] = sd[a + "self_attention.in_proj_weight"]
        out[b + "attn.qkv.bias"] = sd[a + "self_attention.in_proj_bias"]
    pairs += [("norm", "tv.encoder.ln"), ("head", "tv.heads.head"), ("head_dist", "head_dist")]
    copy_linear(out, sd, pairs)
    return out


def deit_hf_names(t, s):
    """transformers' DeiTForImageClassificationWithTeacher names (no pooler), from the timm names."""
    D = s["dim"]
    out = OrderedDict()
    e = "deit.embeddings."
    out[e + "cls_token"] = t["cls_token"]
    out[e + "distillation_token"] = t["dist_token"]
    out[e + "position_embeddings"] = t["pos_embed"]
    pairs = [(e + "patch_embeddings.projection", "patch_embed.proj")]
    for i in range(s["depth"]):
        b, h = "blocks.%d." % i, "deit.encoder.layer.%d." % i
        for kind in ("weight", "bias"):
            for j, n in enumerate(("query", "key", "value")):
                out[h + "attention.attention.%s.%s" % (n, kind)] = t[b + "attn.qkv." + kind][j * D:(j + 1) * D].copy()
        pairs += [(h + dst, b + src) for dst, src in [("layernorm_before", "norm1"), ("layernorm_after", "norm2"),
                                                      ("attention.output.dense", "attn.proj"),
                                                      ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2")]]
    pairs += [("deit.layernorm", "norm"), ("cls_classifier", "head"), ("distillation_classifier", "head_dist")]
    copy_linear(out, t, pairs)
    return out


def make_deit(report):
    s = DEIT
    torch.manual_seed(0)
    model = init_deit(DistilledViT(s), s)
    timm_w = deit_timm_names(model, s)
    hf_w = deit_hf_names(timm_w, s)
    labels = ["ant", "bee", "cicada", "dragonfly", "earwig", "firefly"]
    ddir = os.path.join(OUT, "deit")
    write_safetensors(os.path.join(ddir, "timm", "model.safetensors"), timm_w)
    write_json(os.path.join(ddir, "timm", "config.json"), OrderedDict([
        ("architecture", "deit_tiny_distilled_patch16_224"),
        ("num_classes", s["classes"]),
        ("num_features", s["dim"]),
        ("global_pool", "token"),
        ("model_args", OrderedDict([("img_size", s["image"]), ("patch_size", s["patch"]), ("embed_dim", s["dim"]),
                                    ("depth", s["depth"]), ("num_heads", s["heads"]),
                                    ("mlp_ratio", s["mlp"] / s["dim"]), ("qkv_bias", True)])),
        ("pretrained_cfg", OrderedDict([("input_size", [3, s["image"], s["image"]]), ("interpolation", "bicubic"),
                                        ("crop_pct", 0.875), ("mean", s["mean"]), ("std", s["std"]),
                                        ("num_classes", s["classes"])])),
        ("label_names", labels),
    ]))
    write_safetensors(os.path.join(ddir, "hf", "model.safetensors"), hf_w)
    write_json(os.path.join(ddir, "hf", "config.json"), OrderedDict([
        ("model_type", "deit"),
        ("architectures", ["DeiTForImageClassificationWithTeacher"]),
        ("hidden_size", s["dim"]), ("num_hidden_layers", s["depth"]), ("num_attention_heads", s["heads"]),
        ("intermediate_size", s["mlp"]), ("image_size", s["image"]), ("patch_size", s["patch"]),
        ("num_channels", 3), ("layer_norm_eps", s["eps"]), ("qkv_bias", True), ("hidden_act", "gelu"),
        ("id2label", OrderedDict((str(i), l) for i, l in enumerate(labels))),
        ("label2id", OrderedDict((l, i) for i, l in enumerate(labels))),
    ]))
    write_json(os.path.join(ddir, "hf", "preprocessor_config.json"), OrderedDict([
        ("do_resize", True), ("size", OrderedDict([("height", s["image"]), ("width", s["image"])])),
        # DeiTImageProcessor crops to 224x224 unless told not to: the inputs are at the model's size already.
        ("resample", 3), ("do_center_crop", False), ("do_rescale", True), ("rescale_factor", 1 / 255), ("do_normalize", True),
        ("image_mean", s["mean"]), ("image_std", s["std"]), ("image_processor_type", "DeiTImageProcessor"),
    ]))

    rng = np.random.default_rng(s["seed"] + 1)
    x32 = rng.standard_normal((2, 3, s["image"], s["image"])).astype(np.float32)
    m64 = model.double()
    x = torch.from_numpy(x32.astype(np.float64))
    with torch.no_grad():
        feats = m64.features(x)
        logits = m64(x)
        cls_logits = m64.tv.heads.head(feats[:, 0])
        dist_logits = m64.head_dist(feats[:, 1])
    report["deit |cls head - dist head| max"] = float((cls_logits - dist_logits).abs().max())
    write_json(os.path.join(OUT, "deit.json"), OrderedDict([
        ("name", s["name"]),
        ("inputs", OrderedDict([("shape", list(x32.shape)), ("data", tolist(x32.reshape(-1)))])),
        ("logits", tolist(logits)),
        ("cls", tolist(feats[:, 0])),
        ("avg", tolist(feats[:, 2:].mean(1))),
        ("clsHeadLogits", tolist(cls_logits)),
    ]), compact=True)


def main():
    torch.set_num_threads(1)
    ensure_dir(OUT)
    report = OrderedDict()
    make_malicious()
    make_torch_variants(report)
    make_views()
    make_npz()
    make_zip64()
    make_resample(report)
    make_resized(report)
    make_deit(report)
    for k, v in report.items():
        print("  %-50s %.3g" % (k, v))
    for fn in sorted(os.listdir(OUT)):
        p = os.path.join(OUT, fn)
        if os.path.isfile(p):
            print("  %9d  %s" % (os.path.getsize(p), rel(p)))


if __name__ == "__main__":
    sys.exit(main())
