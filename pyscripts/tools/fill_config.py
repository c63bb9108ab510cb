"""The launchers' one Python entry for run settings (docs/method.md §4): it reads the
variables the user set (see ``spml.training.settings.ENVIRONMENT``) and prints shell
assignments for the launcher to ``eval``.

    python3 pyscripts/tools/fill_config.py train [--processes N] [--device cpu|cuda]
        checks the settings (and, for cuda, that torch sees a GPU per process), writes (start) or
        checks (RESUME=1) <snapshot dir>/config_sod_emb.yaml;
        prints CONFIG, RESUME, EAGER, COMPILE and VALIDATE (1 unless VALIDATE=0)
    python3 pyscripts/tools/fill_config.py test-score [--device cpu|cuda]
        checks that torch sees a GPU for cuda; writes nothing; prints CONFIG (the run's, or
        empty), CHECKPOINT, SAVE_DIR, PROTOCOL
    python3 pyscripts/tools/fill_config.py spelling
        only checks that no variable is a misspelt launcher variable (the demo and predict
        launchers; train and test-score check it too); prints nothing

Errors: one line on stderr, exit status 2.
"""
from __future__ import annotations

import sys, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import argparse
import os
import shlex

from spml.config import ConfigError
from spml.training.settings import SettingsError, check_spelling, flag, prepare_test_score, prepare_training_run


def _assignments(values: dict[str, object]) -> str:
    return "\n".join(f"{name}={shlex.quote(str(value))}" for name, value in values.items())


def _check_gpus(processes: int) -> None:
    """Before the run's config is written: torch must see one GPU per process (SettingsError otherwise)."""
    from lib.distributed import DeviceUnavailableError, check_cuda_devices  # loads torch: GPU launches only

    try:
        check_cuda_devices(processes, f"GPU_ID {os.environ.get('CUDA_VISIBLE_DEVICES', '')}", "GPU_ID cpu")
    except DeviceUnavailableError as error:
        raise SettingsError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("--processes", type=int, default=1)
    test_score = commands.add_parser("test-score")
    test_score.set_defaults(processes=1)  # scores on one GPU
    for command in (train, test_score):
        command.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the launcher's DEVICE")
    commands.add_parser("spelling").set_defaults(device=None)
    args = parser.parse_args(argv)
    try:
        if args.device == "cuda":
            _check_gpus(args.processes)
        if args.command == "spelling":
            check_spelling(os.environ)
        elif args.command == "train":
            # How to run, not what to compute: checked before the run's config is written.
            launch = {"EAGER": int(flag(os.environ, "EAGER")), "COMPILE": int(flag(os.environ, "COMPILE")),
                      "VALIDATE": int(flag({"VALIDATE": os.environ.get("VALIDATE") or "1"}, "VALIDATE"))}
            config, resume, notes = prepare_training_run(os.environ, args.processes, args.device)
            for note in notes:
                print(note, file=sys.stderr)
            print(f"snapshot directory: {config.parent.absolute()}", file=sys.stderr)
            print(_assignments({"CONFIG": config, "RESUME": int(resume), **launch}))
        else:
            run = prepare_test_score(os.environ)
            print(_assignments({"CONFIG": run.config or "", "CHECKPOINT": run.checkpoint, "SAVE_DIR": run.save_dir,
                                "PROTOCOL": run.protocol}))
    except (SettingsError, ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
