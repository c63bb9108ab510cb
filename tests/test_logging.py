"""lib.logging: log records and warnings never glue onto a progress bar."""
from __future__ import annotations

import logging
import re
import sys
import warnings

from tqdm import tqdm

from lib.logging import setup_logging


def test_log_lines_and_warnings_start_on_their_own_line_beside_a_progress_bar(capsys, restored_logging):
    setup_logging(0)
    with tqdm(total=3, file=sys.stderr, mininterval=0) as bar:
        bar.update(1)
        logging.getLogger("spml.data").warning("resized depth.png to the RGB size")
        warnings.warn("a library warning", UserWarning)
        bar.update(1)
    lines = re.split(r"[\r\n]", capsys.readouterr().err)
    assert not [line for line in lines if "%|" in line and "WARNING" in line], "a message glued onto the bar"
    logged = [line for line in lines if "WARNING" in line]
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING spml\.data: resized depth\.png to the RGB size", logged[0])
    assert re.match(r"\d\d:\d\d:\d\d WARNING py\.warnings: .*a library warning", logged[1])
