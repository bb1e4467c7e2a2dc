"""Device selection: a device whose compiler cannot build kernels is never used."""

import pytest

from fxbp.sw.errors import FxbpError

cl = pytest.importorskip("pyopencl")
opencl = pytest.importorskip("fxbp.sw.opencl")


def test_a_device_that_cannot_compile_is_refused_with_its_reason(monkeypatch):
    """PoCL 3.0's LLVM 14 names unknown processors (AMD family 26) 'generic' and fails
    every build: such a device is refused before any run, naming the compiler's error."""
    try:
        if not [d for p in cl.get_platforms() for d in p.get_devices()]:
            pytest.skip("no OpenCL device")
    except cl.Error:
        pytest.skip("no OpenCL platform loads")
    monkeypatch.setattr(opencl, "compiler_problem",
                        lambda device: "error: unknown target CPU 'generic'")
    with pytest.raises(FxbpError, match=r"cannot compile kernels: error: unknown target CPU "
                                        r"'generic'; use --backend golden"):
        opencl.select_device("auto")
    assert not opencl.opencl_available()


def test_the_probe_agrees_with_a_real_build():
    try:
        found = [d for p in cl.get_platforms() for d in p.get_devices()]
    except cl.Error:
        pytest.skip("no OpenCL platform loads")
    for device in found:
        ctx = cl.Context([device])
        try:
            cl.Program(ctx, "__kernel void k(__global int *a) { a[0] = 2; }").build()
            works = True
        except cl.Error:
            works = False
        assert (opencl.compiler_problem(device) is None) == works
