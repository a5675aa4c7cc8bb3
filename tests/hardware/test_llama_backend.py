from pathlib import Path

from tray_app.hardware.llama_backend import _backends_from_files, detect_llama_backend


def test_installed_llama_cpp_python_is_reported():
    backend = detect_llama_backend()
    assert backend.installed and backend.version.count(".") >= 2
    assert "cpu" in backend.backends
    assert backend.summary.startswith("llama-cpp-python")


def test_gpu_backends_are_recognised_from_library_files(tmp_path: Path):
    for name in ("libggml-base.so", "libggml-cpu.so", "ggml-cuda.dll", "libggml-vulkan.so"):
        (tmp_path / name).write_bytes(b"")
    assert _backends_from_files(tmp_path) == ("cpu", "cuda", "vulkan")


def test_tiny_random_gguf_loads_and_generates_with_the_real_library(tiny_gguf: Path):
    import llama_cpp

    llm = llama_cpp.Llama(str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False)
    try:
        out = llm("Bonjour", max_tokens=4, temperature=0.0)
        assert out["usage"]["completion_tokens"] >= 1
        assert llm.n_ctx() == 512
    finally:
        llm.close()
