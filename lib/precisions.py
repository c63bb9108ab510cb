"""The arithmetic precisions a run can ask for, by name (what each means: ``network/precision.py``).

Kept free of torch so that the launchers' settings check can name the choices without loading it.
"""
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
