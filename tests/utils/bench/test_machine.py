from __future__ import annotations

from pathlib import Path

from utils.bench.machine import cpu_model, machine_info, versions


def test_cpu_model_reads_proc_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU @ 2.0GHz\n")
    assert cpu_model(cpuinfo) == "Example CPU @ 2.0GHz"


def test_cpu_model_falls_back_without_cpuinfo(tmp_path: Path) -> None:
    assert cpu_model(tmp_path / "missing")  # platform's answer, never empty


def test_machine_info_names_cpu_cores_backend_and_device() -> None:
    info = machine_info()
    assert {"cpu_model", "cores", "keras_backend", "device", "memory_gib"} <= set(info)
    assert info["cores"] >= 1
    assert info["keras_backend"] in {"tensorflow", "jax", "torch", "numpy"}
    assert info["device"]


def test_versions_name_python_and_the_libraries_none_when_absent() -> None:
    found = versions()
    for name in ("python", "keras", "numpy", "opencv", "streamlit", "tensorflow", "jax"):
        assert name in found
    assert found["numpy"] and found["keras"]
