"""Reading a server-sent event stream (``GET …/events``) from its text lines."""

from __future__ import annotations

from collections.abc import Iterator


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events from text lines: (event name, data)."""
    event, data = "message", list[str]()
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)
