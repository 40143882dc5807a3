"""Whole models with the adapters swapped in, beside the same models as they ship.

What a user of ``mlequations.integrations`` pays, measured where it is paid: a
training step (forward, backward, the loss) and an inference pass of real
architectures built from configs (random weights, no download), on torch.

* ``model[llama-train-eager]`` / ``[llama-train-compiled]``: a tiny Llama (2
  layers, hidden 256, 8 heads, sequence 1024, batch 4), causal language-model
  loss, ``attn_implementation="sdpa"`` against ``"mlequations"``; compiled with
  ``torch.compile(model)`` (inductor), whose first call's time is in
  ``extra_info["compile_s"]``.
* ``model[resnet18-infer]`` / ``[resnet18-train]``: transformers' ResNet with
  ResNet-18's shape (basic blocks, depths 2-2-2-2, widths 64-512) on a batch
  of 8 images of 224², native against ``convert_conv2d(model)``.

Each ``mlequations`` benchmark also runs the native model beside it, one native
step right before each of its rounds: ``extra_info["ratio_beside"]`` (the
median of ours over the median of those) is the ratio to go by on a shared
machine, where the native benchmark's own rounds ran a minute earlier, under
another load.

Run (minutes: the compiled group compiles the model three times)::

    pytest benchmarks/bench_models.py --benchmark-only --benchmark-group-by=group

``MLEQUATIONS_BENCH_QUICK=1`` shrinks every model (sequence 128, images 64²)
and compiles with torch's ``"eager"`` backend (dynamo traces, inductor generates
no code), to check in seconds that the file runs.
"""

from __future__ import annotations

import os
import time

import pytest

from mlequations._backends import by_id

from .conftest import measure

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

QUICK = bool(os.environ.get("MLEQUATIONS_BENCH_QUICK"))
SEQUENCE, BATCH = (128, 2) if QUICK else (1024, 4)
IMAGE, IMAGES = (64, 2) if QUICK else (224, 8)
TORCH_BACKEND = os.environ.get("MLEQUATIONS_BENCH_TORCH_BACKEND", "eager" if QUICK else "inductor")


def _backend():
    backend = by_id("torch-cpu")
    reason = backend.skip_reason()
    if reason:
        pytest.skip(reason)
    return backend


def _llama():
    from mlequations.integrations.transformers import register

    register()
    cfg = transformers.LlamaConfig(
        vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=SEQUENCE,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")


def _resnet18():
    cfg = transformers.ResNetConfig(
        layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
        embedding_size=64, num_labels=10,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.ResNetForImageClassification(cfg)


def _train_step(model, inputs):
    def step():
        model.zero_grad(set_to_none=True)
        loss = model(**inputs).loss
        loss.backward()
        return loss

    return step


def _llama_step(impl, compiled):
    """A training step of the tiny Llama with `impl`, and its first call's time."""
    model = _llama()
    model.set_attn_implementation(impl)
    ids = torch.randint(0, 1000, (BATCH, SEQUENCE), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids, "labels": ids}
    step = _train_step(torch.compile(model, backend=TORCH_BACKEND) if compiled else model, inputs)
    start = time.perf_counter()
    step()  # the first call: compiles (compiled) or warms the allocator (eager)
    return step, time.perf_counter() - start


# Inductor's code generation for this model reaches torch.jit.script_method, which warns.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("impl", ["sdpa", "mlequations"])
def bench_llama_train(benchmark, impl, compiled):
    backend = _backend()
    if compiled:
        torch._dynamo.reset()
    step, first = _llama_step(impl, compiled)
    # Ours runs beside the native model (each round right after a native step), whose
    # own benchmark above runs minutes apart: `ratio_beside` is the ratio to go by.
    beside = _llama_step("sdpa", compiled)[0] if impl != "sdpa" else None
    mode = "compiled" if compiled else "eager"
    measure(
        benchmark, backend, step, group=f"model[llama-train-{mode}]", impl=impl, rounds=5,
        beside=beside, compile_s=first if compiled else None,
        compiler=TORCH_BACKEND if compiled else None, shape=[BATCH, SEQUENCE],
    )  # fmt: skip


def _resnet_step(impl, train):
    model = _resnet18()
    if impl == "mlequations":
        from mlequations.integrations.torch import convert_conv2d

        model = convert_conv2d(model)
    images = torch.randn(IMAGES, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(IMAGES) % 10
    if train:
        model.train()
        return _train_step(model, {"pixel_values": images, "labels": labels})
    model.eval()

    def step():
        with torch.no_grad():
            return model(pixel_values=images).logits

    return step


@pytest.mark.parametrize("train", [False, True], ids=["infer", "train"])
@pytest.mark.parametrize("impl", ["native", "mlequations"])
def bench_resnet18(benchmark, impl, train):
    backend = _backend()
    beside = _resnet_step("native", train) if impl != "native" else None
    mode = "train" if train else "infer"
    measure(
        benchmark, backend, _resnet_step(impl, train), group=f"model[resnet18-{mode}]",
        impl=impl, rounds=5, beside=beside, shape=[IMAGES, 3, IMAGE, IMAGE],
    )  # fmt: skip
