"""A run's schema: each output's kind (``float``, ``int``, ``bool``, ``float[steps]``), merged chunk by chunk.

Why in the driver: each worker checks the blocks it computes, but two workers' chunks can disagree (an output
one of them never returned, an int that became a bool) where neither could see it, and a worker's check ran
where model code runs, which may have replaced it. The errors name the model and the chunk's sequences.
"""

from __future__ import annotations

from .chunk import ChunkResult, StoredChunk, odd_outputs
from .errors import OutputError


def merge_schema(schema: dict[str, str], result: ChunkResult | StoredChunk, model: str) -> bool:
    """Fold a chunk's column kinds into the run's schema; True if the schema changed.

    Names must match exactly; an int column meeting a float one becomes
    float (readers cast the stored int chunks); bool never mixes with numbers.
    Errors name ``model`` (its class name) and the chunk's sequences: two workers' chunks can disagree where
    neither worker's own check could see it.
    """
    return merge_kinds(schema, result.kinds(), result.start, result.stop, model)


def merge_kinds(schema: dict[str, str], kinds: dict[str, str], start: int, stop: int, model: str) -> bool:
    """:func:`merge_schema` for the ``kinds`` of sequences ``start..stop-1`` (a result's, or a stored chunk's)."""
    if not kinds:
        return False
    where = f"sequences {start}..{stop - 1} of {model}"
    if not schema:  # (checked here too: a worker's check ran where model code runs, which may have replaced it)
        if (odd := odd_outputs(kinds)) is not None:
            raise OutputError(f"{where} came back with {odd}")
        schema.update(kinds)
        return True
    if kinds.keys() != schema.keys():
        new = sorted(set(kinds) - set(schema))
        missing = sorted(set(schema) - set(kinds))
        what = f"output '{new[0]}' is new" if new else f"output '{missing[0]}' is missing"
        raise OutputError(f"{where} returned different outputs than earlier sequences: {what}")
    changed = False
    for name, kind in kinds.items():
        old = schema[name]
        if kind == old:
            continue
        if {kind, old} == {"int", "float"}:
            if old == "int":
                schema[name] = "float"
                changed = True
            continue
        raise OutputError(
            f"output '{name}' of {model} changed type: {kind} in sequences {start}..{stop - 1}, {old} earlier; "
            "return the same type every time"
        )
    return changed
