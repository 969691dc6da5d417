"""Shared test plumbing, one module per concern; fixtures stay in the conftest.py files.

    from tests.support.cli import run_airlock
    from tests.support.spec import write_spec

    spec = write_spec(tmp_path, sequence=2, scale=3.0)   # a real ONNX model and its airlock.yaml
    assert run_airlock("build", spec, "--key", key, "-o", tmp_path / "v2.airlock").returncode == 0

Tests import these as ``tests.support.<module>``: pytest puts the repository
root on ``sys.path`` (``pythonpath`` in pyproject.toml), and nothing else.
"""
