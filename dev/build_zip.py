"""Build lambda.zip reproducibly: the two source files, fixed order, timestamps and permissions."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("lambda_function.py", "qstash_verify.py")
# The earliest time a zip can hold: no build time, no local timezone leaks in.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644


def build(target: Path) -> bytes:
    """Write the zip to ``target`` and return its bytes."""
    with zipfile.ZipFile(target, "w") as archive:
        for name in SOURCES:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode below is honoured
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, (ROOT / name).read_bytes(), compresslevel=9)
    return target.read_bytes()


def main() -> int:
    target = ROOT / (sys.argv[1] if len(sys.argv) > 1 else "lambda.zip")
    data = build(target)
    print(f"{target.name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    print(f"  holds: {', '.join(SOURCES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
