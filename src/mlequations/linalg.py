r"""Linear algebra: the linear map, eigen-decompositions, the SVD, PCA and power iteration.

The linear map $y = W x + b$ is the core of every dense layer; the
eigen-decomposition and the singular value decomposition reveal how a matrix
stretches space, and principal component analysis (PCA) is the SVD of centred
data. Everything here is written against the array API standard's ``linalg``
extension — except the general (non-symmetric) eigen-solver, which the standard
does not have and which :func:`eig` takes from the caller's own library.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._xp import (
    Array,
    Namespace,
    device,
    float_dtypes,
    general_eig,
    namespace,
    repeat,
    scalar,
)

__all__ = [
    "EigResult",
    "PCAResult",
    "PowerIterationResult",
    "SVDResult",
    "eig",
    "eigh",
    "linear",
    "pca",
    "power_iteration",
    "svd",
]


class EigResult(NamedTuple):
    """Eigenvalues (``(..., n)``) and eigenvectors as columns (``(..., n, n)``)."""

    eigenvalues: Array
    eigenvectors: Array


class SVDResult(NamedTuple):
    """``a = U @ diag(S) @ Vh``: left vectors, singular values (descending), right vectors."""

    U: Array
    S: Array
    Vh: Array


class PCAResult(NamedTuple):
    """The fitted quantities of scikit-learn's ``PCA``, under the same names (without ``_``)."""

    components: Array
    explained_variance: Array
    explained_variance_ratio: Array
    mean: Array


class PowerIterationResult(NamedTuple):
    """The dominant eigenvalue (``(...)``) and its unit eigenvector (``(..., n)``)."""

    eigenvalue: Array
    eigenvector: Array


def _linalg(xp: Namespace, name: str) -> Any:
    """``xp.linalg.<name>``, or a ``NotImplementedError`` naming the library that lacks it.

    This is a capability check, not a backend switch: the function called is the
    standard's own ``linalg`` extension function, whichever library provides it.
    """
    function = getattr(getattr(xp, "linalg", None), name, None)
    if function is None:
        library = getattr(xp, "__name__", repr(xp)).removeprefix("array_api_compat.")
        raise NotImplementedError(
            f"{name}: the {library} backend has no linalg.{name} (the array API linalg "
            "extension); convert the input to NumPy, PyTorch, JAX or CuPy"
        )
    return function


def _square(a: Array, name: str) -> None:
    """Raise a ``ValueError`` naming `name` unless `a` is a (stack of) square matrices."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(
            f"`{name}` must be a square matrix or a stack of them, shape (..., n, n); "
            f"got shape {tuple(a.shape)}"
        )


def _sign_of_largest(v: Array, xp: Namespace) -> Array:
    """The sign (±1) of the entry of largest magnitude along the last axis of `v`.

    The first such entry wins ties, as in ``numpy.argmax`` and scikit-learn's
    ``svd_flip``. A one-hot comparison with ``arange`` picks the entry without
    gathering, so this traces under ``jax.jit`` and runs on every backend.
    """
    n = v.shape[-1]
    index = xp.argmax(xp.abs(v), axis=-1, keepdims=True)  # (..., 1)
    columns = xp.arange(n, dtype=index.dtype, device=device(v))  # (n,)
    largest = xp.sum(xp.where(columns == index, v, scalar(0.0, v, xp=xp)), axis=-1)  # (...)
    return xp.where(largest < 0, scalar(-1.0, v, xp=xp), scalar(1.0, v, xp=xp))


def linear(
    x: Array, weight: Array, bias: Array | None = None, /, *, xp: Namespace | None = None
) -> Array:
    r"""The affine map of a dense layer, $y = W x + b$, applied along the last axis.

    $$
    y_{\dots, o} = \sum_{i=1}^{D_\text{in}} x_{\dots, i} \, W_{o i} + b_o ,
    \qquad \text{i.e. } y = x W^\top + b \text{ for a batch of row vectors } x .
    $$

    `weight` is stored as (out_features, in_features), as in ``torch.nn.Linear``
    and the guide's $y = A x + b$. Half-precision inputs are multiplied in
    float32 and cast back.

    Args:
        x: Inputs of shape `(..., D_in)` (a single vector `(D_in,)` too).
        weight: Matrix $W$ of shape `(D_out, D_in)`.
        bias: Offsets $b$ of shape `(D_out,)`, or ``None`` for none.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $y$ of shape `(..., D_out)`, in the floating dtype of the inputs (integer
        inputs give the default floating dtype) and on their device.

    Raises:
        ValueError: `weight` is not 2-D or its `D_in` differs from `x`'s last
            axis, or `bias` is not of shape `(D_out,)`.

    Examples:
        The guide's example: $A x$ is $[4, 7]$, and adding $b$ gives $[4, 8]$.

        >>> import numpy as np
        >>> import mlequations as mle
        >>> A = np.array([[2, 1], [1, 3]])
        >>> x = np.array([1, 2])
        >>> b = np.array([0, 1])
        >>> mle.linear(x, A, b)
        array([4., 8.])
        >>> mle.linear(x, A)
        array([4., 7.])

        A batch of rows is mapped row by row:

        >>> mle.linear(np.array([[1.0, 2.0], [0.0, 1.0]]), A, b)
        array([[4., 8.],
               [1., 4.]])

    References:
        Goodfellow, I., Bengio, Y. and Courville, A. (2016). *Deep Learning*,
        section 6.1. MIT Press.
    """
    xp = namespace(x=x, weight=weight, bias=bias, xp=xp)
    if x.ndim < 1:
        raise ValueError(f"`x` must have at least one axis (..., D_in); got shape {tuple(x.shape)}")
    if weight.ndim != 2 or weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"`weight` must have shape (D_out, D_in) with D_in = {x.shape[-1]} to match `x` "
            f"of shape {tuple(x.shape)}; got `weight` of shape {tuple(weight.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"`bias` must have shape (D_out,) = ({weight.shape[0]},) to match `weight` of shape "
            f"{tuple(weight.shape)}; got `bias` of shape {tuple(bias.shape)}"
        )
    out_dtype, work_dtype = float_dtypes(xp, x=x, weight=weight, bias=bias)
    x = xp.astype(x, work_dtype, copy=False)
    weight = xp.astype(weight, work_dtype, copy=False)
    y = xp.matmul(x, xp.matrix_transpose(weight))  # (..., D_out)
    if bias is not None:
        y = y + xp.astype(bias, work_dtype, copy=False)
    return xp.astype(y, out_dtype, copy=False)


def eigh(a: Array, /, *, xp: Namespace | None = None) -> EigResult:
    r"""Eigenvalues and eigenvectors of a symmetric matrix, eigenvalues ascending.

    $$
    A = Q \Lambda Q^\top, \qquad A q_i = \lambda_i q_i, \qquad
    \lambda_1 \le \lambda_2 \le \dots \le \lambda_n, \qquad Q^\top Q = I .
    $$

    The eigenvalues of a symmetric matrix are real and its eigenvectors can be
    chosen orthonormal. Each eigenvector is defined up to its sign (up to a
    rotation within a repeated eigenvalue), and libraries choose differently:
    compare $Q \Lambda Q^\top$, not $Q$. Only the lower triangle of `a` is
    read. Half precision is computed in float32 and cast back.

    Args:
        a: Symmetric matrix or stack of them, shape `(..., n, n)`.
        xp: Array namespace; inferred from `a` when omitted.

    Returns:
        ``EigResult(eigenvalues, eigenvectors)``: shapes `(..., n)` and
        `(..., n, n)` (eigenvectors are the columns), in the dtype and on the
        device of `a`.

    Raises:
        ValueError: `a` is not square.
        NotImplementedError: The namespace has no ``linalg.eigh`` (Dask).

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> w, Q = mle.eigh(np.array([[2.0, 1.0], [1.0, 2.0]]))
        >>> w
        array([1., 3.])
        >>> np.allclose(Q @ np.diag(w) @ Q.T, [[2.0, 1.0], [1.0, 2.0]])
        True

    References:
        Golub, G. H. and Van Loan, C. F. (2013). *Matrix Computations*, 4th ed.,
        chapter 8. Johns Hopkins University Press.
    """
    xp = namespace(a=a, xp=xp)
    _square(a, "a")
    out_dtype, work_dtype = float_dtypes(xp, a=a)
    values, vectors = _linalg(xp, "eigh")(xp.astype(a, work_dtype, copy=False))
    return EigResult(
        xp.astype(values, out_dtype, copy=False), xp.astype(vectors, out_dtype, copy=False)
    )


def eig(a: Array, /, *, xp: Namespace | None = None) -> EigResult:
    r"""Eigenvalues and eigenvectors of a general (not necessarily symmetric) matrix.

    $$
    A v_i = \lambda_i v_i, \qquad \lambda_i \in \mathbb{C}, \quad
    v_i \in \mathbb{C}^n, \quad \lVert v_i \rVert_2 = 1 .
    $$

    A real matrix may have complex eigenvalues (a rotation has $e^{\pm i\theta}$),
    so both outputs are **complex**: complex64 for float32 (and half precision,
    which is computed in float32), complex128 for float64. The order of the
    eigenvalues is the solver's own (not sorted), and each eigenvector is
    defined up to a complex factor of modulus 1.

    The array API standard has no general eigen-solver, so this calls the
    caller's library's own (``numpy.linalg.eig``, ``torch.linalg.eig``,
    ``jax.numpy.linalg.eig`` — CPU only, also under ``jax.jit`` —, and
    array-api-strict's, which wraps NumPy's); the result stays on the caller's
    device. Libraries without one (Dask, CuPy before it gained ``eig``) raise
    ``NotImplementedError`` naming the library. For symmetric matrices use
    :func:`eigh`, which every backend has and which returns real results.

    Args:
        a: Square matrix or stack of them, shape `(..., n, n)`, real dtype.
        xp: Array namespace; inferred from `a` when omitted.

    Returns:
        ``EigResult(eigenvalues, eigenvectors)``: complex arrays of shapes
        `(..., n)` and `(..., n, n)` (eigenvectors are the columns), on the
        device of `a`.

    Raises:
        ValueError: `a` is not square.
        NotImplementedError: The library has no general eigen-solver.

    Examples:
        The guide's matrix has the eigenvalues 5 and 2:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> A = np.array([[4.0, 2.0], [1.0, 3.0]])
        >>> w, V = mle.eig(A)
        >>> w
        array([5.+0.j, 2.+0.j])
        >>> np.allclose(A @ V, V * w)
        True

        A rotation by 90 degrees has no real eigenvector:

        >>> mle.eig(np.array([[0.0, -1.0], [1.0, 0.0]])).eigenvalues
        array([0.+1.j, 0.-1.j])

    References:
        Golub, G. H. and Van Loan, C. F. (2013). *Matrix Computations*, 4th ed.,
        chapter 7. Johns Hopkins University Press.
    """
    xp = namespace(a=a, xp=xp)
    _square(a, "a")
    _, work_dtype = float_dtypes(xp, a=a)
    values, vectors = general_eig(xp.astype(a, work_dtype, copy=False), xp)
    return EigResult(values, vectors)


def svd(a: Array, /, *, full_matrices: bool = False, xp: Namespace | None = None) -> SVDResult:
    r"""Singular value decomposition, singular values in descending order.

    $$
    A = U \Sigma V^\top, \qquad U^\top U = I, \quad V^\top V = I, \quad
    \Sigma = \operatorname{diag}(\sigma_1 \ge \sigma_2 \ge \dots \ge 0) .
    $$

    Each pair $(u_i, v_i)$ is defined up to a common sign (libraries differ),
    so compare $U \Sigma V^\top$, not $U$. Half precision is computed in
    float32 and cast back.

    Args:
        a: Matrix or stack of them, shape `(..., m, n)`.
        full_matrices: Return square $U$ `(..., m, m)` and $V^\top$
            `(..., n, n)` instead of the reduced `(..., m, k)` and `(..., k, n)`,
            $k = \min(m, n)$ (Dask supports only the reduced form, and only of
            one matrix: its SVD rejects a stack).
        xp: Array namespace; inferred from `a` when omitted.

    Returns:
        ``SVDResult(U, S, Vh)`` with `S` of shape `(..., k)`, in the dtype and on
        the device of `a`; `m` or `n` of size 0 (and size-0 batches) give empty
        factors. For ±inf or NaN entries the result is the library's (NumPy and
        torch raise ``LinAlgError``, JAX returns NaN).

    Raises:
        ValueError: `a` has fewer than two axes.

    Examples:
        The guide's matrix:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        >>> U, S, Vh = mle.svd(A)
        >>> S
        array([9.52551809, 0.51430058])
        >>> U.shape, Vh.shape
        ((3, 2), (2, 2))
        >>> np.allclose(U * S @ Vh, A)
        True

    References:
        Golub, G. H. and Van Loan, C. F. (2013). *Matrix Computations*, 4th ed.,
        section 2.4. Johns Hopkins University Press.
    """
    xp = namespace(a=a, xp=xp)
    if a.ndim < 2:
        raise ValueError(f"`a` must have shape (..., m, n); got shape {tuple(a.shape)}")
    out_dtype, work_dtype = float_dtypes(xp, a=a)
    u, s, vh = _linalg(xp, "svd")(xp.astype(a, work_dtype, copy=False), full_matrices=full_matrices)
    return SVDResult(*(xp.astype(t, out_dtype, copy=False) for t in (u, s, vh)))


def pca(x: Array, /, *, n_components: int, xp: Namespace | None = None) -> PCAResult:
    r"""Principal component analysis by the SVD of the centred data, as scikit-learn's ``PCA``.

    $$
    \bar{x} = \frac{1}{N} \sum_{n=1}^{N} x_n, \qquad
    X - \mathbf{1}\bar{x}^\top = U \Sigma V^\top, \qquad
    \operatorname{var}_k = \frac{\sigma_k^2}{N - 1}, \qquad
    \operatorname{ratio}_k = \frac{\operatorname{var}_k}{\sum_{j} \operatorname{var}_j} .
    $$

    The components are the first `n_components` rows of $V^\top$ (the
    directions of largest variance); the ratio divides by the total variance
    of *all* $\min(N, D)$ directions. The sign of each component is made
    deterministic as in scikit-learn's ``svd_flip(u_based_decision=False)``:
    the entry of largest magnitude in each row of $V^\top$ is positive (the
    first one on ties), so every backend returns the same components as
    ``PCA(svd_solver="full")``.

    The ratio is computed from $\sigma_k / \max_j \sigma_j$, so it stays in
    $[0, 1]$ when $\sigma_k^2$ itself overflows or underflows. Constant data
    (every sample equal, all-zero included) has no variance to explain: the
    variances are 0 and so are the ratios (scikit-learn divides 0 by 0 there
    and returns NaN with a warning); the components are then the solver's
    orthonormal basis, sign-fixed as above, and any basis is equally right.
    The data are centred on the first sample before the mean is taken, so a
    constant feature centres to exact zeros on every backend.

    Fuzzing found: an all-zero `x` gave NaN ratios, and so did data of
    magnitude $10^{20}$ or $10^{-30}$ in float32 ($10^{160}$ in float64), where
    $\sigma^2$ overflowed to inf or underflowed to 0; and on JAX five samples
    ``[0.0, 7.1]`` gave the ratio 1, as their mean rounded to
    $7.1 + 8.9 \cdot 10^{-16}$ and that residue was the only "variance" left.

    Args:
        x: Data of shape `(N, D)`: N samples (N ≥ 2) of D features.
        n_components: Number of components to keep, $1 \le K \le \min(N, D)$.
        xp: Array namespace; inferred from `x` when omitted.

    Returns:
        ``PCAResult(components, explained_variance, explained_variance_ratio,
        mean)`` of shapes `(K, D)`, `(K,)`, `(K,)`, `(D,)`, in the dtype and on
        the device of `x`. The ratios lie in $[0, 1]$ and sum to at most 1.

    Raises:
        ValueError: `x` is not 2-D or has fewer than 2 samples, or
            `n_components` is out of range (so `x` with no feature, `D = 0`,
            raises too: there is no component to keep).

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> x = np.array([[2.0, 0.0], [0.0, 1.0], [-2.0, 0.0], [0.0, -1.0]])
        >>> result = mle.pca(x, n_components=1)
        >>> result.components
        array([[1., 0.]])
        >>> result.explained_variance, result.explained_variance_ratio
        (array([2.66666667]), array([0.8]))

        Constant data explains nothing:

        >>> mle.pca(np.ones((3, 2)), n_components=2).explained_variance_ratio
        array([0., 0.])

    References:
        Pearson, K. (1901). On lines and planes of closest fit to systems of
        points in space. *Philosophical Magazine* 2(11), 559-572.
    """
    xp = namespace(x=x, xp=xp)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(
            f"`x` must have shape (N, D) with at least N = 2 samples; got shape {tuple(x.shape)}"
        )
    n_samples, n_features = x.shape
    if (
        isinstance(n_components, bool)
        or not isinstance(n_components, int)
        or not 1 <= n_components <= min(n_samples, n_features)
    ):
        raise ValueError(
            f"`n_components` must be an int between 1 and min(N, D) = "
            f"{min(n_samples, n_features)} for `x` of shape {tuple(x.shape)}; got {n_components!r}"
        )
    out_dtype, work_dtype = float_dtypes(xp, x=x)
    x = xp.astype(x, work_dtype, copy=False)
    # Centre on the first sample before averaging (the shifted-data algorithm): a
    # constant feature then centres to exact zeros, where mean(x) may round (found by
    # fuzzing: five equal values left a 1e-15 residue that "explained" 100% of nothing),
    # and a large common offset costs no digits.
    shifted = x - x[:1, :]  # (N, D)
    offset = xp.mean(shifted, axis=0)  # (D,)
    mean = x[0, :] + offset  # (D,)
    _, s, vt = _linalg(xp, "svd")(shifted - offset, full_matrices=False)  # (k,), (k, D)
    vt = vt * _sign_of_largest(vt, xp)[:, None]  # svd_flip: largest |entry| of a row > 0
    variance = s**2 / (n_samples - 1)  # (k,)
    # The ratio from s / max(s), in [0, 1]: s**2 itself over- or underflows long before
    # s does (1e20 or 1e-20 in float32). Constant data (s = 0) explains nothing: ratio 0,
    # not 0 / 0, under a double where so the gradient stays finite too.
    s_max = xp.max(s)
    spread = s_max > 0
    r = s / xp.where(spread, s_max, scalar(1.0, s, xp=xp))  # (k,), in [0, 1]
    r2 = r * r
    total = xp.sum(r2)  # >= 1 where spread
    ratio = xp.where(spread, r2 / xp.where(spread, total, scalar(1.0, s, xp=xp)), 0 * r2)
    parts = (vt[:n_components, :], variance[:n_components], ratio[:n_components], mean)
    return PCAResult(*(xp.astype(t, out_dtype, copy=False) for t in parts))


def power_iteration(
    a: Array, /, *, num_iters: int = 100, xp: Namespace | None = None
) -> PowerIterationResult:
    r"""The dominant eigenpair by power iteration: repeated multiplication and normalisation.

    $$
    v_{k+1} = \frac{A v_k}{\lVert A v_k \rVert_2}, \qquad
    \lambda = v_K^\top A v_K \quad \text{(the Rayleigh quotient)}, \qquad
    v_0 \propto \left(1, \tfrac{1}{2}, \dots, \tfrac{1}{n}\right) .
    $$

    The component of $v_k$ along the eigenvector of the largest $|\lambda_1|$
    grows by $|\lambda_1 / \lambda_2|$ per step relative to the others, so the
    error shrinks like $|\lambda_2 / \lambda_1|^k$: fast with a clear gap,
    never with a tie $|\lambda_1| = |\lambda_2|$ (for example $\pm\lambda$).
    The loop runs exactly `num_iters` times — no tolerance, no data-dependent
    stopping — so it traces under ``jax.jit`` (unrolled) and stays lazy on
    Dask. The start vector is fixed (no randomness) and has positive entries
    of different sizes, so it is not orthogonal to the usual special
    directions (the all-ones vector, alternating signs, a coordinate axis).
    The eigenvector's sign is fixed as in :func:`pca`: its entry of largest
    magnitude is positive. Only standard matrix products are used, so it
    runs on every backend, including those without ``linalg.eigh``.

    The iteration runs on $A / \max_{ij} |A_{ij}|$ (same eigenvectors) and
    each $A v_k$ is scaled by its largest entry before its norm is taken, so no
    step over- or underflows; the Rayleigh quotient is scaled back at the end.
    Where $A v_k = 0$ (the zero matrix, a nilpotent matrix), $v_k$ is an
    eigenvector for the eigenvalue 0 and is kept: the zero matrix gives the
    eigenvalue 0 and the normalised start vector, never 0/0. Fuzzing found
    both: the zero matrix gave a zero "eigenvector", and so did matrices of
    magnitude $10^{20}$ or $10^{-30}$ in float32 ($10^{300}$ or $10^{-170}$ in
    float64), with the eigenvalue 0, as $\lVert A v \rVert^2$ over- or
    underflowed. The norm's square root sits behind a double ``where``, so
    the gradient stays finite there too ($v v^\top$ at the zero matrix).

    Args:
        a: Square matrix or stack of them, shape `(..., n, n)` with $n \ge 1$
            (the batch axes may have size 0); meant for a dominant eigenvalue
            that is real (always so for symmetric `a`).
        num_iters: Number of multiplications, at least 1.
        xp: Array namespace; inferred from `a` when omitted.

    Returns:
        ``PowerIterationResult(eigenvalue, eigenvector)`` of shapes `(...)` and
        `(..., n)`, in the dtype and on the device of `a`; the eigenvector has
        unit norm.

    Raises:
        ValueError: `a` is not square or is 0 x 0 (no eigenvalue to find), or
            `num_iters` is not a positive int.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> value, vector = mle.power_iteration(np.array([[2.0, 1.0], [1.0, 2.0]]))
        >>> value
        array(3.)
        >>> vector
        array([0.70710678, 0.70710678])

        The zero matrix: eigenvalue 0, and the start vector is an eigenvector:

        >>> mle.power_iteration(np.zeros((2, 2))).eigenvector
        array([0.89442719, 0.4472136 ])

    References:
        von Mises, R. and Pollaczek-Geiringer, H. (1929). Praktische
        Verfahren der Gleichungsauflösung. *ZAMM* 9, 152-164.
    """
    xp = namespace(a=a, xp=xp)
    _square(a, "a")
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"`num_iters` must be a positive int; got {num_iters!r}")
    if a.shape[-1] == 0:
        raise ValueError(
            f"`a` must have at least one row and column (n >= 1): a 0 x 0 matrix has no "
            f"dominant eigenvalue; got shape {tuple(a.shape)}"
        )
    out_dtype, work_dtype = float_dtypes(xp, a=a)
    a = xp.astype(a, work_dtype, copy=False)
    n = a.shape[-1]
    one = scalar(1.0, a, xp=xp)
    # Iterate on A / max|A_ij| (the same eigenvectors, entries in [-1, 1]): A v then
    # neither overflows (1e300 in float64) nor underflows (1e-20 in float32) on the way.
    a_max = xp.max(xp.abs(a), axis=(-2, -1), keepdims=True)  # (..., 1, 1)
    a_max = xp.where(a_max > 0, a_max, one)
    a = a / a_max  # (..., n, n)
    v = 1 / xp.arange(1, n + 1, dtype=work_dtype, device=device(a))  # (n,)
    v = xp.broadcast_to(v / xp.sqrt(xp.sum(v * v)), a.shape[:-1])  # (..., n), unit

    def step(v: Array) -> Array:
        w = xp.matmul(a, v[..., None])[..., 0]  # (..., n)
        w_max = xp.max(xp.abs(w), axis=-1, keepdims=True)  # (..., 1)
        moved = w_max > 0
        w = w / xp.where(moved, w_max, one)  # (..., n), entries in [-1, 1]
        # A v = 0 (a zero or nilpotent matrix): v is an eigenvector for 0; keep it. The
        # double where keeps sqrt away from 0, whose infinite slope would make NaN gradients.
        norm = xp.sqrt(xp.where(moved, xp.sum(w * w, axis=-1, keepdims=True), one))  # >= 1
        return xp.where(moved, w / norm, v)

    v = repeat(num_iters, step, v, xp)
    rayleigh = xp.sum(v * xp.matmul(a, v[..., None])[..., 0], axis=-1, keepdims=True)
    eigenvalue = (rayleigh * a_max[..., 0])[..., 0]  # (...), 0-d (not a NumPy scalar)
    v = v * _sign_of_largest(v, xp)[..., None]
    return PowerIterationResult(
        xp.astype(eigenvalue, out_dtype, copy=False), xp.astype(v, out_dtype, copy=False)
    )
