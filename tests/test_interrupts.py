"""lib.interrupts: Ctrl-C answered with one line, never in the middle of writes that belong together
(the checkpoint case: tests/test_training_checkpoint.py)."""
from __future__ import annotations

import os
import signal

import pytest

from lib.interrupts import INTERRUPTED, deferred_interrupts, exit_status


def test_a_script_interrupted_by_ctrl_c_says_so_in_one_line(capsys):
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert exit_status(interrupted, "tool.py") == INTERRUPTED == 130
    assert capsys.readouterr().err == "tool.py: interrupted\n"
    assert exit_status(lambda: 2, "tool.py") == 2 and exit_status(lambda: None, "tool.py") == 0
    assert capsys.readouterr().err == ""


def test_ctrl_c_within_the_block_takes_effect_after_it():
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append(True)
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with deferred_interrupts():  # nothing recorded: nothing raised
        pass
