"""A run's schema: each output's kind (``float``, ``int``, ``bool``, ``float[steps]``), merged chunk by chunk.

Why in the driver: each worker checks the blocks it computes, but two workers' chunks can disagree (an output
one of them never returned, an int that became a bool) where neither could see it, and a worker's check ran
where model code runs, which may have replaced it. The errors name the model and the chunk's sequences.
"""

from __future__ import annotations

from .chunk import ChunkResult, StoredChunk, odd_outputs, trajectory_steps
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


#: outputs a batch model's block may weigh before a run says so: past it a block's arrays (and the model's own
#: temporaries, often two or three times as much) crowd a worker's memory, and a short run still computes a whole
#: block — a 100,000-step trajectory at the default 4,096 sequences a block is 3.3 GB, 20 s for a run of 100
BIG_BLOCK_BYTES = 256 << 20
#: what the advice aims a block's outputs at
GOOD_BLOCK_BYTES = 32 << 20


def block_advice(schema: dict[str, str], block: int | None, model: str) -> str | None:
    """A one-line warning when one ``block`` of the outputs in ``schema`` weighs more than :data:`BIG_BLOCK_BYTES`,
    with the block to set instead (a power of two); None when it does not, or for a one-at-a-time model."""
    if not block or not schema:
        return None
    per_sequence = 8 * sum(trajectory_steps(kind) or 1 for kind in schema.values())
    if block * per_sequence <= BIG_BLOCK_BYTES:
        return None
    better = 1 << max(0, (GOOD_BLOCK_BYTES // per_sequence).bit_length() - 1)
    return (
        f"model {model}: one block of {block:,} sequences is {_size(block * per_sequence)} of outputs; every "
        f"sequences() call computes a whole block, even for a shorter run. Set `block = {better:,}` on the class "
        f"({_size(better * per_sequence)} a block; a run's results depend on its block: docs/models.md)"
    )


def _size(nbytes: int) -> str:
    """``nbytes`` in the largest binary unit that keeps a number of at least 1, one decimal."""
    for unit, shift in (("GB", 30), ("MB", 20), ("KB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f} {unit}"
    return f"{nbytes} bytes"
