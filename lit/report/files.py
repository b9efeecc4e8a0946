"""Safe file names for reports."""

from __future__ import annotations

import re



def file_stem(name: str) -> str:
    """`name` made safe as the start of a file name (experiment names come from folders or
    data set names; anything but letters, digits, '.', '_' and '-' becomes '-')."""
    stem = re.sub(r"[^\w.-]+", "-", str(name)).strip("-.")
    return stem or "experiment"
