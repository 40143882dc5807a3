"""The guide's backpropagation example without autodiff, and a small MLP learning XOR.

The guide builds ``nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())``, takes one SGD
step (lr 0.01) on the MSE of two points and prints the loss. Its initial weights
are random; here they are the ones ``torch.manual_seed(0)`` gives, so the numbers
are reproducible. ``mle.mlp_train_step`` computes the same loss and the same
updated weights with the chain rule written out; where torch is installed the
guide's own code runs too, as the oracle.
"""

import importlib.util

import numpy as np

import mlequations as mle

# torch.manual_seed(0); nn.Linear(2, 1) -> weight (1, 2), bias (1,), as float32 values
w0 = np.asarray([[-0.005293981172144413, 0.37932288646698]], dtype=np.float32)
b0 = np.asarray([-0.5819807648658752], dtype=np.float32)
X = np.asarray([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
y = np.asarray([[0.0], [1.0]], dtype=np.float32)

(params, loss) = mle.mlp_train_step(((w0, b0),), X, y, lr=0.01, output_activation="sigmoid")
((w1, b1),) = params
print(f"Loss: {float(loss):.6f}   weight {w1.ravel()}   bias {b1}")
np.testing.assert_allclose(float(loss), 0.216495, atol=1e-6)
np.testing.assert_allclose(w1, [[-0.0039293, 0.3806876]], atol=1e-6)
np.testing.assert_allclose(b1, [-0.5814404], atol=1e-6)

if importlib.util.find_spec("torch"):
    # The guide's code, verbatim, from the same weights: the oracle.
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), w0)
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    X_t = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float32)
    y_t = torch.tensor([[0.0], [1.0]], dtype=torch.float32)

    optimizer.zero_grad()
    output = model(X_t)
    loss_t = loss_fn(output, y_t)
    loss_t.backward()
    optimizer.step()
    print(f"torch: Loss: {loss_t.item():.6f}   weight {model[0].weight.detach().numpy().ravel()}")
    np.testing.assert_allclose(float(loss), loss_t.item(), rtol=1e-6)
    np.testing.assert_allclose(w1, model[0].weight.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b1, model[0].bias.detach().numpy(), rtol=1e-6)

# A 2-8-1 tanh/sigmoid network learns XOR with the hand-written backward pass.
X_xor = np.asarray([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
y_xor = np.asarray([[0.0], [1.0], [1.0], [0.0]])
params = mle.mlp_init((2, 8, 1), seed=0, xp=np)
for step in range(1, 3001):
    params, loss = mle.mlp_train_step(params, X_xor, y_xor, lr=1.0, output_activation="sigmoid")
    if step in (1, 100, 1000, 3000):
        print(f"step {step:5d}   loss {float(loss):.5f}")
out, _ = mle.mlp_forward(params, X_xor, output_activation="sigmoid")
print("XOR predictions:", out.ravel().round(3))
assert float(loss) < 0.01
np.testing.assert_array_equal(out.ravel() > 0.5, [False, True, True, False])
