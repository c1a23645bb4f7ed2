#!/usr/bin/python3
"""Export a torchvision ViT with torch.onnx.export, and the same weights for vit.

The bench compares the ONNX graph vit emits against torch's own export of the
same network with the same weights on the same onnxruntime.  This script builds
torchvision's vit_b_32 / vit_b_16 (random weights from a fixed seed; every
tensor, the zero-initialised head included, is drawn afresh so that the logits
differ between classes) and writes, per model, into OUTDIR (never committed:
B/16 is 330 MB a copy):

  OUTDIR/NAME/torch.onnx         torch.onnx.export, opset 17, input `pixels`
                                 [batch, 3, 224, 224], output `logits`
  OUTDIR/NAME/model.safetensors  the torchvision state_dict (F32), which vit
                                 reads as `-m B/32 -w model.safetensors`
  OUTDIR/NAME/reference.json     torch's logits for 2 images x[i] = sin(i / 1000)
                                 (flat NCHW index i), which the bench recomputes
                                 to check that both graphs compute the same

Run with Debian's interpreter (torch 1.13 / torchvision 0.14):
    /usr/bin/python3 scripts/export_torch_vit.py OUTDIR [b32 b16]
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from torchvision.models import vit_b_16, vit_b_32


MODELS = {"b32": (vit_b_32, 3232), "b16": (vit_b_16, 1616)}
OPSET = 17


def save_safetensors(path, state):
    """F32 tensors in name order behind the JSON header (padded to 8 bytes)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(state):
        raw = np.ascontiguousarray(state[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(state[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for raw in blobs:
            f.write(raw)


def randomised(build, seed):
    """torchvision's architecture with every parameter drawn from N(0, 0.02²),
    norms around 1 and biases small: the shape of a trained model's weights."""
    model = build(weights=None)
    rng = np.random.default_rng(seed)
    state = {}
    for name, t in model.state_dict().items():
        shape = tuple(t.shape)
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln.weight")):
            v = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("bias"):
            v = 0.02 * rng.standard_normal(shape)
        else:
            v = 0.02 * rng.standard_normal(shape)
        state[name] = torch.from_numpy(v.astype(np.float32))
    model.load_state_dict(state, strict=True)
    return model.eval()


def export(name, outdir):
    build, seed = MODELS[name]
    model = randomised(build, seed)
    out = os.path.join(outdir, name)
    os.makedirs(out, exist_ok=True)
    x = torch.from_numpy(np.sin(np.arange(2 * 3 * 224 * 224) / 1000.0).astype(np.float32).reshape(2, 3, 224, 224))
    with torch.no_grad():
        logits = model(x)
    # Traced with autograd on: in eval mode under no_grad, nn.MultiheadAttention takes its fused fast path
    # (aten::_native_multi_head_attention), which torch 1.13 cannot export.
    torch.onnx.export(
        model, (x,), os.path.join(out, "torch.onnx"), opset_version=OPSET,
        input_names=["pixels"], output_names=["logits"],
        dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True)
    save_safetensors(os.path.join(out, "model.safetensors"),
                      {k: v.detach().numpy() for k, v in model.state_dict().items()})
    with open(os.path.join(out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"shape": list(x.shape), "logits": logits.double().numpy().tolist()}, f)
        f.write("\n")
    print("%s: wrote %s" % (name, out))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    outdir = sys.argv[1]
    for name in sys.argv[2:] or list(MODELS):
        if name not in MODELS:
            sys.exit("unknown model %r; choose from %s" % (name, ", ".join(MODELS)))
        export(name, outdir)


if __name__ == "__main__":
    main()
