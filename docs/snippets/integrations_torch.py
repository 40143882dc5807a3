"""torch modules: every nn.Conv2d of a model swapped in place, and torch's SDPA signature."""

import torch
import torch.nn.functional as F
from torch import nn

from mlequations.integrations.torch import Conv2d, convert_conv2d, scaled_dot_product_attention

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
    nn.Conv2d(16, 16, 3, padding=1, groups=16),  # depthwise
    nn.Conv2d(16, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
)  # fmt: skip
images = torch.randn(4, 3, 32, 32)
native = model(images)

convert_conv2d(model)  # same parameters, same state_dict: only the forward pass changes
assert all(type(m) is not nn.Conv2d for m in model.modules())
assert sum(type(m) is Conv2d for m in model.modules()) == 3
print("max |mlequations - native| conv:", (model(images) - native).abs().max().item())

q = torch.randn(2, 8, 16, 32)  # (B, Hq, L, E)
k, v = torch.randn(2, 2, 2, 16, 32).unbind(0)  # (B, Hkv, S, E): grouped-query
out = scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
print("max |mlequations - native| sdpa:", (out - ref).abs().max().item())
assert torch.allclose(out, ref, atol=1e-5)
