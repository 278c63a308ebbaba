"""Splitting a long reply for Instagram's 1000-byte text limit (bytes of UTF-8, not characters).

Splits only between grapheme clusters, so an emoji, a flag, a skin tone or a ZWJ family
never breaks in half; within a part's budget it prefers the last line break, then the
last space, so words stay whole where they can.
"""

from __future__ import annotations

import regex

TEXT_LIMIT_BYTES = 1000
# Only look this far back for a nicer break; past it, a hard break at a grapheme is fine.
SOFT_BREAK_WINDOW = 200

_GRAPHEME = regex.compile(r"\X")


def split_text(text: str, limit: int = TEXT_LIMIT_BYTES) -> list[str]:
    if len(text.encode("utf-8")) <= limit:
        return [text] if text else []
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for cluster in _GRAPHEME.findall(text):
        width = len(cluster.encode("utf-8"))
        if width > limit:  # a pathological cluster (thousands of combining marks)
            if current:
                parts.append("".join(current))
                current, size = [], 0
            parts.extend(_split_code_points(cluster, limit))
            continue
        if size + width > limit:
            keep, carry = _soft_break(current)
            parts.append("".join(keep))
            current = carry
            size = sum(len(c.encode("utf-8")) for c in current)
        current.append(cluster)
        size += width
    if current:
        parts.append("".join(current))
    return [p for p in (part.strip(" ") for part in parts) if p]


def _soft_break(clusters: list[str]) -> tuple[list[str], list[str]]:
    """Split the full part at its last newline or space inside the soft window."""
    budget = 0
    for index in range(len(clusters) - 1, 0, -1):
        budget += len(clusters[index].encode("utf-8"))
        if budget > SOFT_BREAK_WINDOW:
            break
        if clusters[index] in ("\n", "\r\n"):
            return clusters[: index + 1], clusters[index + 1 :]
    budget = 0
    for index in range(len(clusters) - 1, 0, -1):
        budget += len(clusters[index].encode("utf-8"))
        if budget > SOFT_BREAK_WINDOW:
            break
        if clusters[index].isspace():
            return clusters[: index + 1], clusters[index + 1 :]
    return clusters, []


def _split_code_points(cluster: str, limit: int) -> list[str]:
    out: list[str] = []
    chunk = ""
    for char in cluster:
        if len((chunk + char).encode("utf-8")) > limit:
            out.append(chunk)
            chunk = ""
        chunk += char
    if chunk:
        out.append(chunk)
    return out
