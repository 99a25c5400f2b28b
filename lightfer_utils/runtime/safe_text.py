"""One place that turns input names (file paths, messages that quote them) into safe output.

- `path_text`: a path as valid UTF-8 text. Names that are not UTF-8 come from the file system as
  surrogate escapes (PEP 383); their bytes are written as \\xNN, so CSV, JSON and terminals take
  them and the same input always gets the same text (what --resume matches on).
- `csv_cell`: a cell that a spreadsheet would run as a formula (=, +, -, @, tab, carriage return
  first) gets a leading apostrophe, as OWASP's CSV-injection advice says.
- `terminal_text`: control characters (escape sequences, newlines, C1 codes) as visible escapes,
  so a name cannot move the cursor, recolour or rewrite a terminal.

No syntax newer than Python 3.6: the runtime side runs on the Jetson.
"""

import os
import re
from pathlib import Path
from typing import Union

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def path_text(path: Union[str, Path]) -> str:
    raw = os.fsencode(str(path))
    return raw.decode("utf-8", "backslashreplace")


def csv_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _escape(match) -> str:
    char = match.group(0)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, "\\x{:02x}".format(ord(char)))


def terminal_text(text: str) -> str:
    return _CONTROL.sub(_escape, path_text(text))
