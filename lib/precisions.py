"""The arithmetic precisions a run can ask for, by name (what each means: ``network/precision.py``).

Kept free of torch so that the launchers' settings check can name and check the choices without loading it.
"""
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


def check_precision_device(precision: str, device_type: str, setting: str) -> None:
    """Refuse a precision other than fp32 off CUDA (the CPU runs fp32 only): a ValueError that
    starts with ``setting``, how the user asked for it (``PRECISION=bf16``, ``--precision bf16``)."""
    if precision != "fp32" and device_type != "cuda":
        raise ValueError(f"{setting}: needs a CUDA device (the CPU runs fp32)")
