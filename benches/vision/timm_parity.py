"""Reference outputs of timm's own backbones, for `examples/timm_parity.rs` to compare against.

    benches/vision/.venv/bin/pip install timm      # once (PyPI)
    benches/vision/.venv/bin/python benches/vision/timm_parity.py OUT_DIR [MODEL ...]
    cargo run --release --example timm_parity -- OUT_DIR

For each timm model name (default: convnext_atto, resnet18, vit_tiny_patch16_224), builds the
model with random weights (every norm's scale and shift, every layer scale and the class token
drawn at random too, so that exeml's folding of them is exercised), and writes
OUT_DIR/NAME/model.safetensors (the state dict, timm's names) and OUT_DIR/NAME/check.safetensors:
`input` (2×3×96×128 for the convolutional networks; 2×3×224×224 for a ViT, its native grid),
`features` (pooled, after the head norm where the model has one) and `logits` (the 1000-class
classifier).
"""

import os
import sys

import timm
import torch
from safetensors.torch import save_file


def main() -> None:
    out = sys.argv[1]
    names = sys.argv[2:] or ["convnext_atto", "resnet18", "vit_tiny_patch16_224"]
    torch.manual_seed(0)
    for name in names:
        model = timm.create_model(name, pretrained=False).eval()
        with torch.no_grad():
            for key, tensor in model.state_dict().items():
                if key == "cls_token":
                    tensor.uniform_(-0.5, 0.5)
                elif tensor.ndim == 1 and tensor.is_floating_point():
                    if key.endswith("running_var"):
                        tensor.uniform_(0.5, 1.5)
                    elif key.endswith("weight") or key.endswith("gamma"):
                        tensor.uniform_(0.5, 1.5)
                    else:
                        tensor.uniform_(-0.5, 0.5)
            x = torch.randn(2, 3, 224, 224) if hasattr(model, "pos_embed") else torch.randn(2, 3, 96, 128)
            features = model.forward_head(model.forward_features(x), pre_logits=True)
            logits = model(x)
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        state = {k: v.contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
        save_file(state, os.path.join(folder, "model.safetensors"))
        save_file(
            {"input": x, "features": features.contiguous(), "logits": logits.contiguous()},
            os.path.join(folder, "check.safetensors"),
        )
        print(f"{folder}: features {tuple(features.shape)}, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
