"""One way to replace a file so that a reader never sees half of it: write a temporary file next
to it, then rename it over the target (atomic on POSIX within one file system).

No syntax newer than Python 3.6: the runtime side runs on the Jetson.
"""

import os
from pathlib import Path
from typing import Union


def atomic_write(path: Union[str, Path], content: Union[str, bytes]) -> None:
    """`path` holds `content` (text as UTF-8), all of it or, if this fails, what it held before."""
    target = Path(path)
    partial = target.with_name("{}.{}.tmp".format(target.name, os.getpid()))
    try:
        if isinstance(content, bytes):
            partial.write_bytes(content)
        else:
            partial.write_text(content, encoding="utf-8")
        partial.replace(target)
    finally:
        if partial.exists():
            partial.unlink()
