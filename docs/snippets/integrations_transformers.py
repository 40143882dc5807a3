"""A Hugging Face model with attn_implementation="mlequations": the logits of SDPA."""

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from mlequations.integrations.transformers import register

register()  # attention and mask functions, under the name "mlequations"

config = LlamaConfig(  # tiny, random weights: 4 query heads share 2 key/value heads
    vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2,
)  # fmt: skip
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(config, attn_implementation="mlequations").eval()

input_ids = torch.randint(1, 100, (2, 8))
attention_mask = torch.ones(2, 8, dtype=torch.long)
attention_mask[0, :3] = 0  # the first sequence is left-padded
with torch.no_grad():
    ours = model(input_ids=input_ids, attention_mask=attention_mask).logits
    model.set_attn_implementation("sdpa")
    native = model(input_ids=input_ids, attention_mask=attention_mask).logits

real = attention_mask.bool()
print("max |mlequations - sdpa| on real tokens:", (ours - native)[real].abs().max().item())
assert torch.allclose(ours[real], native[real], atol=1e-5)
