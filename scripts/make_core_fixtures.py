#!/usr/bin/python3
"""Fixtures for the facts the core keeps in one place, made with torchvision and PIL (not our code):

  models/gray24/hf/        a 1-channel ViT (num_channels 1) in the Hugging Face layout
  gray/gray24_{0..2}.png   colour photo-like images of other sizes than the model's
  goldens/gray24.json      torchvision's logits for them after PIL's convert('L'), a bilinear resize and
                           normalisation: what `vit classify` must give
  models/odd40/sharded-bin/ odd40's weights as a sharded pytorch_model.bin (two shards and an index)

Run with Debian's interpreter (torch 1.13 / torchvision 0.14) after scripts/make_goldens.py:
    /usr/bin/python3 scripts/make_core_fixtures.py
"""
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens as g  # noqa: E402  (its helpers: model building, layouts, image making)

GRAY = dict(
    name="gray24", seed=2442, image=32, patch=8, dim=24, heads=3, depth=2, mlp=48, classes=4, eps=1e-12,
    repr=None, mean=[0.5], std=[0.5], scale_embed=1.0, scale_resid=1.0, hf=True, half=False,
    labels=["dark", "light", "striped", "spotted"],
)


def gray_model(spec):
    """torchvision's ViT with a 1-channel patch projection (its conv_proj is fixed at 3 channels)."""
    model = g.build_model(spec)
    D, P = spec["dim"], spec["patch"]
    rng = np.random.default_rng(spec["seed"] + 7)
    conv = nn.Conv2d(1, D, kernel_size=P, stride=P)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy((rng.standard_normal((D, 1, P, P)) / P).astype(np.float32)))
        conv.bias.copy_(torch.from_numpy((0.1 * rng.standard_normal(D)).astype(np.float32)))
    model.conv_proj = conv
    return model.eval()


def gray_input(path, spec):
    """PIL's pipeline for a 1-channel model: convert('L'), resize to the model's size, normalise."""
    S = spec["image"]
    with Image.open(path) as im:
        L = im.convert("RGB").convert("L").resize((S, S), Image.BILINEAR)
    a = np.asarray(L, dtype=np.float64) / 255.0
    a = (a - spec["mean"][0]) / spec["std"][0]
    return a[None, None]  # [1, 1, S, S]


def make_gray(report):
    spec = GRAY
    name, S = spec["name"], spec["image"]
    model = gray_model(spec)
    sd = g.tv_state(model)
    hdir = os.path.join(g.FIX, "models", name, "hf")
    g.ensure_dir(hdir)
    g.write_json(os.path.join(hdir, "config.json"), OrderedDict([
        ("model_type", "vit"),
        ("architectures", ["ViTForImageClassification"]),
        ("hidden_size", spec["dim"]), ("num_hidden_layers", spec["depth"]), ("num_attention_heads", spec["heads"]),
        ("intermediate_size", spec["mlp"]), ("image_size", S), ("patch_size", spec["patch"]), ("num_channels", 1),
        ("layer_norm_eps", spec["eps"]), ("qkv_bias", True), ("hidden_act", "gelu"),
        ("id2label", OrderedDict((str(i), l) for i, l in enumerate(spec["labels"]))),
        ("label2id", OrderedDict((l, i) for i, l in enumerate(spec["labels"]))),
    ]))
    g.write_json(os.path.join(hdir, "preprocessor_config.json"), OrderedDict([
        ("do_resize", True), ("size", OrderedDict([("height", S), ("width", S)])), ("resample", 2),
        ("do_rescale", True), ("rescale_factor", 1 / 255), ("do_normalize", True),
        ("image_mean", spec["mean"]), ("image_std", spec["std"]), ("image_processor_type", "ViTImageProcessor"),
    ]))
    g.write_safetensors(os.path.join(hdir, "model.safetensors"), g.to_hf(sd, spec))

    m64 = model.double().eval()
    rng = np.random.default_rng(spec["seed"] + 1)
    images = []
    for i, size in enumerate([(45, 38), (32, 32), (60, 71)]):
        img = g.make_image(rng, max(size)).resize(size, Image.BICUBIC)
        g.ensure_dir(os.path.join(g.FIX, "gray"))
        path = os.path.join(g.FIX, "gray", "%s_%d.png" % (name, i))
        img.save(path)
        x = torch.from_numpy(gray_input(path, spec))
        with torch.no_grad():
            logits = m64(x)[0]
        images.append(OrderedDict([("file", g.rel(path)), ("logits", g.tolist(logits))]))
    spread = max(abs(a - b) for a, b in zip(images[0]["logits"], images[2]["logits"]))
    report["gray24 logit spread between images"] = spread
    g.write_json(os.path.join(g.FIX, "goldens", "%s.json" % name), OrderedDict([("name", name), ("images", images)]))


def make_sharded_bin(report):
    """odd40's Hugging Face weights as torch.save shards with an index, as transformers writes them."""
    src = os.path.join(g.FIX, "models", "odd40", "hf")
    dst = os.path.join(g.FIX, "models", "odd40", "sharded-bin")
    g.ensure_dir(dst)
    tensors = g.read_safetensors(os.path.join(src, "model.safetensors"))
    names = list(tensors.keys())
    half = len(names) // 2
    files = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    weight_map = OrderedDict()
    for f, part in zip(files, (names[:half], names[half:])):
        torch.save(OrderedDict((k, torch.from_numpy(tensors[k].copy())) for k in part), os.path.join(dst, f))
        for k in part:
            weight_map[k] = f
    total = int(sum(t.size * 4 for t in tensors.values()))
    g.write_json(os.path.join(dst, "pytorch_model.bin.index.json"),
                 OrderedDict([("metadata", OrderedDict([("total_size", total)])), ("weight_map", weight_map)]))
    for f in ("config.json", "preprocessor_config.json"):
        with open(os.path.join(src, f), "rb") as a, open(os.path.join(dst, f), "wb") as b:
            b.write(a.read())
    report["sharded-bin tensors"] = len(names)


def main():
    report = OrderedDict()
    make_gray(report)
    make_sharded_bin(report)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
