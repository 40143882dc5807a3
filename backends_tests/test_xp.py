"""The backend seam: namespace resolution, device and dtype policy, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from mlequations import _xp
from mlequations._backends import by_id

from ._assert import assert_close


def _available(backend_id):
    backend = by_id(backend_id)
    if backend.skip_reason():
        pytest.skip(backend.skip_reason())
    return backend


class TestNamespace:
    def test_infers_the_callers_namespace(self, backend):
        x = backend.asarray(np.ones(3), "float32")
        assert _xp.namespace(x) is backend.xp

    def test_xp_override_accepts_library_modules(self, backend):
        assert _xp.namespace(xp=backend.module) is backend.xp
        assert _xp.namespace(xp=backend.xp) is backend.xp

    def test_mixed_libraries_name_both(self):
        torch = _available("torch-cpu").module
        pattern = r"numpy and torch.*`query` is a numpy.*`key` is a torch"
        with pytest.raises(TypeError, match=pattern):
            _xp.namespace(query=np.ones(2), key=torch.ones(2))

    def test_mixed_devices_name_both(self):
        strict = _available("strict").module
        a = strict.asarray([1.0], device=strict.Device())
        b = strict.asarray([1.0], device=strict.Device("device1"))
        with pytest.raises(ValueError, match=r"different devices.*`input`.*`weight`.*device1"):
            _xp.namespace(input=a, weight=b)

    def test_torch_meta_and_cpu_do_not_mix(self):
        torch = _available("torch-meta").module
        with pytest.raises(ValueError, match=r"`x`.*`y` is on meta"):
            _xp.namespace(x=torch.ones(2), y=torch.ones(2, device="meta"))

    def test_none_and_scalars_are_ignored(self):
        assert _xp.namespace(np.ones(2), None, 3.0, bias=None) is _xp.namespace(np.ones(2))

    def test_no_arrays_needs_xp(self):
        with pytest.raises(TypeError, match="xp="):
            _xp.namespace(None)

    def test_xp_must_be_a_library(self):
        with pytest.raises(TypeError, match="xp must be an array library"):
            _xp.namespace(xp="numpy")


class TestDtypePolicy:
    def test_float_inputs_keep_their_dtype(self, backend, dtype):
        x = backend.asarray(np.ones(2), dtype)
        out, work = _xp.float_dtypes(backend.xp, x)
        assert out == backend.dtype(dtype) == work

    def test_integers_promote_to_the_default_float(self, backend):
        x = backend.asarray(np.arange(3))
        out, work = _xp.float_dtypes(backend.xp, x)
        info = backend.xp.__array_namespace_info__()
        assert out == work == info.default_dtypes(device=backend.device)["real floating"]

    def test_half_computes_in_float32(self, backend, half_dtype):
        x = backend.asarray(np.ones(2), half_dtype)
        out, work = _xp.float_dtypes(backend.xp, x)
        assert out == backend.dtype(half_dtype)
        assert work == backend.dtype("float32")

    def test_mixed_float_and_int_takes_the_float(self, backend):
        x = backend.asarray(np.ones(2), "float32")
        y = backend.asarray(np.arange(2))
        assert _xp.float_dtypes(backend.xp, x, y)[0] == backend.dtype("float32")

    def test_complex_is_rejected_by_name(self):
        with pytest.raises(TypeError, match="`target` must be a real array"):
            _xp.float_dtypes(np, target=np.ones(2, dtype=np.complex128))


class TestScalar:
    def test_scalar_takes_dtype_and_device(self, backend, dtype):
        x = backend.asarray(np.ones(2), dtype)
        s = _xp.scalar(0.5, x)
        assert s.dtype == x.dtype
        assert s.shape == ()
        if backend.device is not None:
            assert backend.device_of(s) == backend.device


class TestExp2:
    def test_matches_float64_on_every_backend(self, backend, dtype):
        # array-api-strict has no exp2 and takes the exp(x · ln 2) fallback.
        x = np.asarray([-np.inf, -126.5, -30.25, -1.0, -0.5, 0.0, 0.75, 3.0, 20.0])
        out = backend.call(lambda a: _xp.exp2(a, _xp.namespace(a)), backend.asarray(x, dtype))
        assert_close(out, np.exp2(x), backend, dtype)


class TestFastPaths:
    """Issue 19: the shortcuts for inputs that plainly agree still catch what disagrees."""

    def test_a_cached_type_still_checks_devices(self):
        strict = _available("strict").module
        a = strict.asarray([1.0], device=strict.Device())
        b = strict.asarray([1.0], device=strict.Device("device1"))
        assert _xp.namespace(a) is _xp.namespace(b)  # one array each: the cache fills
        with pytest.raises(ValueError, match=r"different devices.*`p`.*`q`"):
            _xp.namespace(p=a, q=b)

    def test_a_list_beside_arrays_is_named(self):
        with pytest.raises(TypeError, match=r"`target` must be an array, got list"):
            _xp.namespace(input=np.ones(2), target=[1.0, 2.0])

    def test_torch_tensors_on_two_devices_are_not_the_fast_path(self):
        torch = _available("torch-cpu").module
        with pytest.raises(ValueError, match=r"different devices"):
            _xp.namespace(x=torch.ones(2), w=torch.ones(2, device="meta"))

    def test_mixed_float_dtypes_promote(self, backend):
        if "float64" not in backend.dtypes():
            pytest.skip(f"{backend.id} has no float64")
        a = backend.asarray(np.ones(2), "float32")
        b = backend.asarray(np.ones(2), "float64")
        xp = backend.xp
        assert _xp.float_dtypes(xp, a, b) == (xp.float64, xp.float64)
        assert _xp.float_dtypes(xp, a, a) == (xp.float32, xp.float32)

    def test_as_array_turns_numpy_scalars_into_arrays_only(self):
        xp = _xp.namespace(np.ones(1))
        out = _xp.as_array(np.float32(2.0), xp)
        assert isinstance(out, np.ndarray)
        assert (out.shape, out.dtype) == ((), np.float32)
        x = np.ones(3)
        assert _xp.as_array(x, xp) is x


def test_split_batch_is_a_batch_in_several_dask_chunks(backend):
    x = np.ones((4, 3))
    if backend.library == "dask":
        da = backend.module
        assert _xp.split_batch(da.from_array(x, chunks=(2, 3)))
        assert not _xp.split_batch(da.from_array(x, chunks=(4, 1)))  # one block of samples
    else:
        assert not _xp.split_batch(backend.asarray(x, "float32"))
