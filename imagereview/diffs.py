"""Word-level differences between two prompts, as HTML safe to put in a page."""

import difflib
import re

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def prompt_diff(old: str, new: str) -> SafeString:
    """Mark words removed from `old` with <del> and words added in `new` with <ins>."""
    before, after = TOKENS.findall(old), TOKENS.findall(new)
    parts: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            parts.append(("del", "".join(before[a1:a2])))
        if op in ("insert", "replace"):
            parts.append(("ins", "".join(after[b1:b2])))
        if op == "equal":
            parts.append(("", "".join(before[a1:a2])))
    return mark_safe(
        "".join(
            f"<{tag}>{escape(text)}</{tag}>" if tag else str(escape(text)) for tag, text in parts
        )
    )
