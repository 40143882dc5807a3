"""The adapters of ``mlequations.integrations`` on real architectures (issue 20).

Every model is a tiny random-init one built from its config (no weights, no
network); every reference is the framework's own native path: transformers'
``attn_implementation="sdpa"``, ``nn.Conv2d``, flax's default ``attention_fn``.
A test skips only when its framework is not installed.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest

import mlequations as mle

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


def _rel_close(actual, expected, rtol, name="", floor=0.0):
    scale = max(float(expected.abs().max()), floor) or 1.0
    err = float((actual - expected).abs().max())
    assert err <= rtol * scale, f"{name}: max error {err:.3g} > {rtol} x {scale:.3g}"


# --- torch ---------------------------------------------------------------------------


class TestTorchSDPA:
    def test_signature_is_torchs(self):
        from mlequations.integrations.torch import scaled_dot_product_attention

        # torch's builtin has no inspectable signature; its docstring's first line is it.
        doc = F.scaled_dot_product_attention.__doc__.split("->")[0]
        expected = " ".join(doc.split()).replace("scaled_dot_product_attention", "")
        params = inspect.signature(scaled_dot_product_attention).parameters.values()
        ours = ", ".join(
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in params
        )
        assert f"({ours})" == expected

    @pytest.mark.parametrize("causal", [False, True])
    def test_matches_torch(self, causal):
        from mlequations.integrations.torch import scaled_dot_product_attention

        g = torch.Generator().manual_seed(0)
        q = torch.randn(2, 4, 5, 8, generator=g, requires_grad=True)
        k = torch.randn(2, 2, 5, 8, generator=g, requires_grad=True)
        v = torch.randn(2, 2, 5, 8, generator=g, requires_grad=True)
        mask = None if causal else torch.rand(2, 1, 5, 5, generator=g) > 0.3
        mask = None if mask is None else mask | torch.eye(5, dtype=torch.bool)  # no empty row
        args = {"attn_mask": mask, "is_causal": causal, "scale": 0.3, "enable_gqa": True}
        ours = scaled_dot_product_attention(q, k, v, **args)
        ref = F.scaled_dot_product_attention(q, k, v, **args)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
        w = torch.randn(ref.shape, generator=g)
        grads = torch.autograd.grad((ours * w).sum(), (q, k, v))
        ref_grads = torch.autograd.grad((ref * w).sum(), (q, k, v))
        for a, b in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

    def test_dropout_draws_its_seed_from_torchs_generator(self):
        from mlequations.integrations.torch import scaled_dot_product_attention

        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in "qkv")
        torch.manual_seed(3)
        out = scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True)
        again = scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True)
        torch.manual_seed(3)
        seed = torch.randint(2**31 - 1, ())
        expected = mle.attention(q, k, v, is_causal=True, dropout_p=0.3, dropout_seed=seed)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        assert not torch.equal(out, again)  # the generator moved on: a fresh mask
        plain = scaled_dot_product_attention(q, k, v, is_causal=True)
        # Every output is a mix of the rows of V: dropout zeroes weights, the rest are 1/(1-p)·P.
        assert not torch.allclose(out, plain)


class TestConv2d:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"kernel_size": 3, "padding": 1},
            {
                "kernel_size": (3, 2),
                "stride": 2,
                "padding": (1, 0),
                "dilation": (1, 2),
                "bias": False,
            },
            {"kernel_size": 3, "padding": "same", "groups": 2},
            {"kernel_size": 3, "padding": 2, "padding_mode": "reflect"},
            {"kernel_size": 3, "padding": 1, "padding_mode": "circular", "stride": 2},
        ],
        ids=["pad1", "strided-dilated", "same-groups", "reflect", "circular"],
    )
    def test_matches_nn_conv2d(self, kwargs):
        from mlequations.integrations.torch import Conv2d

        torch.manual_seed(0)
        native = nn.Conv2d(4, 6, **kwargs)
        ours = Conv2d(4, 6, **kwargs)
        ours.load_state_dict(native.state_dict())
        assert ours.state_dict().keys() == native.state_dict().keys()
        x = torch.randn(2, 4, 9, 8, requires_grad=True)
        y, y_ref = ours(x), native(x)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        (gx,) = torch.autograd.grad((y * y_ref.detach()).sum(), x)
        (gx_ref,) = torch.autograd.grad((y_ref * y_ref.detach()).sum(), x)
        torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)

    def test_convert_swaps_in_place(self):
        from mlequations.integrations.torch import Conv2d, convert_conv2d

        class Custom(nn.Conv2d):
            pass

        model = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 1)), Custom(4, 4, 1)
        )
        params = list(model.parameters())
        keys = model.state_dict().keys()
        assert convert_conv2d(model) is model
        assert [type(m) for m in (model[0], model[1][0], model[2])] == [Conv2d, Conv2d, Custom]
        assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
        assert model.state_dict().keys() == keys


# --- transformers --------------------------------------------------------------------


def _causal_lm(kind, attention_dropout=0.0):
    transformers = pytest.importorskip("transformers")
    from mlequations.integrations.transformers import register

    register()
    if kind == "llama":  # grouped-query: 4 query heads share 2 key/value heads
        cfg = transformers.LlamaConfig(
            vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        )  # fmt: skip
    elif kind == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64,
            attn_pdrop=attention_dropout, resid_pdrop=0.0, embd_pdrop=0.0,
        )  # fmt: skip
    elif kind == "gemma2":  # capped scores, c·tanh(s/c): sdpa has no cap, eager is the reference
        cfg = transformers.Gemma2Config(
            vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
            query_pre_attn_scalar=16, attn_logit_softcapping=0.05, max_position_embeddings=64,
        )  # fmt: skip
    else:
        cfg = transformers.BertConfig(
            vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=64,
            attention_probs_dropout_prob=attention_dropout, hidden_dropout_prob=0.0,
        )  # fmt: skip
    torch.manual_seed(0)
    auto = (
        transformers.AutoModelForMaskedLM if kind == "bert" else transformers.AutoModelForCausalLM
    )
    return auto.from_config(cfg, attn_implementation=_NATIVE.get(kind, "sdpa")).eval()


_NATIVE = {"gemma2": "eager"}


def _batch(padding):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 96, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    pad = slice(0, 4) if padding == "left" else slice(5, 9)
    mask[0, pad] = 0
    mask[2, pad.start + 2 : pad.stop] = 0
    return ids, mask


def _logits_and_grads(model, ids, mask, impl):
    model.set_attn_implementation(impl)
    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=mask).logits
    w = torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    (logits * w)[mask.bool()].sum().backward()  # a loss on the real tokens only
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach()[mask.bool()], grads


@pytest.mark.parametrize("padding", ["left", "right"])
@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert", "gemma2"])
def test_transformers_logits_and_gradients_match_sdpa(kind, padding):
    model = _causal_lm(kind)
    ids, mask = _batch(padding)
    ref, ref_grads = _logits_and_grads(model, ids, mask, _NATIVE.get(kind, "sdpa"))
    ours, grads = _logits_and_grads(model, ids, mask, "mlequations")
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    # A key bias's true gradient is exactly 0 (softmax ignores a shift of a row of scores),
    # so both sides hold rounding noise there: errors are relative to each parameter's
    # largest gradient, but never to less than 1e-3 of the model's largest.
    floor = 1e-3 * max(float(g.abs().max()) for g in ref_grads.values())
    for name, g in grads.items():
        _rel_close(g, ref_grads[name], 1e-4, name, floor)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_transformers_generate_matches_sdpa(kind):
    model = _causal_lm(kind)
    ids, mask = _batch("left")
    args = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    ref = model.generate(input_ids=ids, attention_mask=mask, **args)
    model.set_attn_implementation("mlequations")
    ours = model.generate(input_ids=ids, attention_mask=mask, **args)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_transformers_compiles_without_graph_break(kind):
    model = _causal_lm(kind)
    ids, mask = _batch("left")
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
    model.set_attn_implementation("mlequations")
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    logits = compiled(input_ids=ids, attention_mask=mask).logits
    m = mask.bool()
    torch.testing.assert_close(logits.detach()[m], ref[m], rtol=0, atol=1e-5)
    logits[m].square().mean().backward()  # and trains, compiled
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_transformers_attention_dropout_trains(kind):
    # The configs' attention dropout only (hidden dropout 0), so only it can move the logits.
    model = _causal_lm(kind, attention_dropout=0.25)
    model.set_attn_implementation("mlequations")
    ids, mask = _batch("right")
    real = mask.bool()
    with torch.no_grad():
        evaluation = model(input_ids=ids, attention_mask=mask).logits[real]
    model.train()
    runs = []
    for _ in range(2):
        torch.manual_seed(7)  # the seeds of the masks come from torch's generator
        model.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask).logits[real]
        logits.square().mean().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        runs.append((logits.detach(), grads))
    (logits, grads), (logits_again, grads_again) = runs
    torch.testing.assert_close(logits, logits_again, rtol=0, atol=0)
    for a, b in zip(grads, grads_again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert not torch.allclose(logits, evaluation)  # dropout acted in training...
    model.eval()
    with torch.no_grad():  # ...and not in evaluation
        torch.testing.assert_close(
            model(input_ids=ids, attention_mask=mask).logits[real], evaluation
        )


def test_transformers_softcap_caps_and_sinks_raise():
    pytest.importorskip("transformers")
    from mlequations.integrations.transformers import attention_forward

    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 1, 2, 4, 8, generator=g).unbind(0)
    mask = torch.tensor([[True, True, False, False]] * 3 + [[False] * 4])  # last row: no key
    capped, _ = attention_forward(nn.Module(), q, k, v, mask, scaling=2.0, softcap=0.5)
    scores = 0.5 * torch.tanh(2.0 * q @ k.transpose(-1, -2) / 0.5)
    ref = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(capped.transpose(1, 2)[..., :3, :], ref[..., :3, :])
    assert torch.equal(capped.transpose(1, 2)[..., 3, :], torch.zeros(1, 2, 8))
    uncapped, _ = attention_forward(nn.Module(), q, k, v, mask, scaling=2.0)
    assert not torch.allclose(capped, uncapped, atol=1e-3)
    with pytest.raises(NotImplementedError, match="s_aux"):
        attention_forward(nn.Module(), q, k, v, None, s_aux=torch.zeros(2))


def _vision(kind):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "resnet":
        cfg = transformers.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
            num_labels=5,
        )  # fmt: skip
        return transformers.ResNetForImageClassification(cfg)
    cfg = transformers.ConvNextConfig(
        num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5
    )
    return transformers.ConvNextForImageClassification(cfg)  # depthwise 7x7 convolutions


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_convert_conv2d_on_transformers_vision_models(kind):
    from mlequations.integrations.torch import Conv2d, convert_conv2d

    native = _vision(kind).train()
    ours = convert_conv2d(copy.deepcopy(native))
    assert any(type(m) is Conv2d for m in ours.modules())
    assert not any(type(m) is nn.Conv2d for m in ours.modules())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    outs = []
    for model in (native, ours):
        logits = model(pixel_values=x).logits
        logits.square().sum().backward()
        outs.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (logits, grads), (ref, ref_grads) = outs[1], outs[0]
    _rel_close(logits, ref, 1e-5, "logits")
    for name, g in grads.items():
        _rel_close(g, ref_grads[name], 1e-4, name)


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_converted_vision_models_train_compiled_without_graph_break(kind):
    from mlequations.integrations.torch import convert_conv2d

    native = _vision(kind).train()
    ours = convert_conv2d(copy.deepcopy(native))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    native(pixel_values=x).logits.square().sum().backward()
    # aot_eager traces the backward pass too: conv2d's backward rule under dynamo.
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    logits = compiled(pixel_values=x).logits
    logits.square().sum().backward()
    _rel_close(logits.detach(), native(pixel_values=x).logits.detach(), 1e-5, "logits")
    reference = dict(native.named_parameters())
    for name, p in ours.named_parameters():
        _rel_close(p.grad, reference[name].grad, 1e-4, name)


# --- flax ----------------------------------------------------------------------------


def _flax_inputs():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jax.random.normal(jax.random.key(0), (2, 6, 32))
    mask = np.ones((2, 1, 6, 6), dtype=bool)
    mask[0, :, :, 4:] = False  # sample 0: keys 4 and 5 are padding
    mask[1, :, 5, :] = False  # sample 1: query 5 sees nothing (flax: mean of V; us: zeros)
    real = np.ones((2, 6), dtype=bool)
    real[1, 5] = False
    return x, jnp.asarray(mask), jnp.asarray(real)


def _compare_flax(make, apply):
    """Outputs and jax.grad (params and inputs) under jit, on the rows of real queries."""
    jax = pytest.importorskip("jax")
    from mlequations.integrations.flax import attention_fn

    x, mask, real = _flax_inputs()
    w = jax.random.normal(jax.random.key(5), (2, 6, 32))

    def loss(params, x, fn, mask):
        out = apply(fn, params, x, mask)
        return (out * w * real[..., None]).sum(), out

    results = {}
    for name, fn in (("native", None), ("ours", attention_fn)):
        params = make(fn)
        grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
        results[name] = grad(params, x, fn, mask)
    (g_ours, out_ours), (g_ref, out_ref) = results["ours"], results["native"]
    np.testing.assert_allclose(out_ours[real], out_ref[real], rtol=1e-5, atol=1e-5)
    assert not np.allclose(out_ours[~real], out_ref[~real])  # the documented difference
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # A float 0/1 mask selects exactly as the boolean one; it is not added to the scores.
    params = make(attention_fn)
    as_float = jax.jit(apply, static_argnums=0)(attention_fn, params, x, mask.astype(x.dtype))
    np.testing.assert_allclose(as_float, out_ours, rtol=1e-6, atol=1e-6)


def test_flax_linen_matches_default_attention():
    pytest.importorskip("flax")
    import jax
    from flax import linen

    def layer(fn):
        return linen.MultiHeadDotProductAttention(
            num_heads=4, deterministic=True, **({} if fn is None else {"attention_fn": fn})
        )

    def make(fn):
        return layer(fn).init(jax.random.key(1), jax.numpy.zeros((2, 6, 32)))

    def apply(fn, params, x, mask):
        return layer(fn).apply(params, x, mask=mask)

    _compare_flax(make, apply)


def test_flax_nnx_grouped_query_matches_default_attention():
    pytest.importorskip("flax")
    from flax import nnx

    def layer(fn):
        kw = {} if fn is None else {"attention_fn": fn}
        return nnx.MultiHeadAttention(
            num_heads=4, in_features=32, num_kv_heads=2, decode=False, rngs=nnx.Rngs(1), **kw
        )

    graphdef = {}

    def make(fn):
        graphdef[fn], state = nnx.split(layer(fn))
        return state

    def apply(fn, state, x, mask):
        return nnx.merge(graphdef[fn], state)(x, mask=mask)

    _compare_flax(make, apply)


def test_flax_bias_causal_and_dtype():
    pytest.importorskip("flax")
    import jax
    import jax.numpy as jnp
    from flax.nnx import dot_product_attention

    from mlequations.integrations.flax import attention_fn

    q = jax.random.normal(jax.random.key(0), (2, 5, 4, 8))
    k = jax.random.normal(jax.random.key(1), (2, 5, 4, 8))
    v = jax.random.normal(jax.random.key(2), (2, 5, 4, 8))
    bias = jax.random.normal(jax.random.key(3), (2, 4, 5, 5))
    mask = jax.random.uniform(jax.random.key(4), (2, 1, 5, 5)) > 0.4
    mask = mask | jnp.eye(5, dtype=bool)
    for kw in ({"bias": bias}, {"bias": bias, "mask": mask}, {"mask": mask, "is_causal": True}):
        ours = jax.jit(lambda q, k, v, kw=kw: attention_fn(q, k, v, **kw))(q, k, v)
        np.testing.assert_allclose(ours, dot_product_attention(q, k, v, **kw), atol=2e-6)
    cast = jax.jit(attention_fn, static_argnames="dtype")
    assert cast(q.astype(jnp.bfloat16), k, v, dtype=jnp.float32).dtype == jnp.float32
    assert cast(q, k, v, dtype=jnp.bfloat16).dtype == jnp.bfloat16


def test_flax_dropout_takes_its_seed_from_the_key():
    flax = pytest.importorskip("flax")
    import jax

    from mlequations.integrations.flax import attention_fn

    jnp = jax.numpy
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 5, 3, 4)) for i in range(3))
    key = jax.random.key(11)
    out = jax.jit(lambda q, k, v, r: attention_fn(q, k, v, dropout_rate=0.3, dropout_rng=r))(
        q, k, v, key
    )
    seed = jax.random.randint(key, (), 0, 2**31 - 1)
    swap = lambda x: jnp.swapaxes(x, -3, -2)  # noqa: E731
    expected = mle.attention(swap(q), swap(k), swap(v), dropout_p=0.3, dropout_seed=seed)
    np.testing.assert_allclose(out, swap(expected), rtol=1e-6, atol=1e-6)
    plain = attention_fn(q, k, v, dropout_rate=0.3, dropout_rng=key, deterministic=True)
    np.testing.assert_allclose(plain, attention_fn(q, k, v), rtol=1e-6)  # evaluation: none
    assert not np.allclose(out, plain)
    with pytest.raises(ValueError, match="dropout_rng"):
        attention_fn(q, k, v, dropout_rate=0.1)
    with pytest.raises(NotImplementedError, match="sow_weights"):
        attention_fn(q, k, v, module=object())

    # In a linen layer: the 'dropout' stream's key picks the mask, and gradients flow.
    layer = flax.linen.MultiHeadDotProductAttention(
        num_heads=2, qkv_features=8, dropout_rate=0.3, attention_fn=attention_fn
    )
    x = jax.random.normal(jax.random.key(4), (2, 6, 8))
    params = layer.init(jax.random.key(0), x, deterministic=True)

    @jax.jit
    def loss(params, rng):
        out = layer.apply(params, x, deterministic=False, rngs={"dropout": rng})
        return jnp.sum(out**2)

    a, b, c = (loss(params, jax.random.key(s)) for s in (1, 1, 2))
    assert a == b
    assert a != c
    grads = jax.jit(jax.grad(loss))(params, jax.random.key(1))
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


# --- keras ---------------------------------------------------------------------------

# Keras picks its backend once, at import: each backend runs in its own process.
_KERAS_FIT = """
import json
import keras
import numpy as np
from mlequations.integrations.keras import Conv2D, MultiHeadAttention

def model(conv, mha):
    images = keras.Input((6, 6, 3))
    x = conv(4, 3, padding="same", activation="relu")(images)
    x = conv(4, 3, strides=2, padding="same", groups=2)(x)  # (3, 3, 4)
    x = keras.layers.Reshape((9, 4))(x)
    x = mha(num_heads=2, key_dim=4)(x, x, use_causal_mask=True)
    return keras.Model(images, keras.layers.Dense(1)(keras.layers.Flatten()(x)))

rng = np.random.default_rng(0)
x = rng.normal(size=(16, 6, 6, 3)).astype("float32")
y = rng.normal(size=(16, 1)).astype("float32")
keras.utils.set_random_seed(0)
native = model(keras.layers.Conv2D, keras.layers.MultiHeadAttention)
ours = model(Conv2D, MultiHeadAttention)
ours.set_weights(native.get_weights())
dropout = model(Conv2D, lambda **kw: MultiHeadAttention(dropout=0.3, seed=1, **kw))
dropout.set_weights(native.get_weights())
losses = {}
for name, m in (("native", native), ("ours", ours), ("dropout", dropout)):
    m.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    history = m.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    losses[name] = history.history["loss"]
print(json.dumps(losses))
"""


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_keras_fit_matches_native_layers(backend):
    import importlib.util
    import json
    import os
    import subprocess
    import sys

    for name in ("keras", backend):  # not imported here: keras would pick its backend
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend}
    run = subprocess.run(
        [sys.executable, "-c", _KERAS_FIT], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    losses = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(losses["ours"]) == 3
    np.testing.assert_allclose(losses["ours"], losses["native"], rtol=1e-5)
    assert losses["ours"][-1] < losses["ours"][0]  # it trains
    # With attention dropout in training: it trains too, on other (dropped) weights.
    assert np.isfinite(losses["dropout"]).all()
    assert losses["dropout"] != losses["ours"]
