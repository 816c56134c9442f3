"""A run page shows failed sequences in a row with the same exception once (a batch model's failed block)."""

from ancho.web.site import failure_groups


def failure(sequence: int, error: str = "MemoryError: no room", traceback: str = "Traceback …\nMemoryError") -> dict:
    return {"sequence": sequence, "error": error, "traceback": traceback}


def test_a_failed_block_is_one_entry_and_other_failures_their_own():
    failures = [failure(i) for i in range(0, 16)]  # a block of 16, one exception
    failures += [failure(20), failure(21, error="ValueError: x"), failure(22, error="ValueError: x")]
    failures += [failure(40, traceback="other")]
    assert failure_groups(failures) == [
        {"first": 0, "last": 15, "count": 16, "error": "MemoryError: no room", "traceback": "Traceback …\nMemoryError"},
        {"first": 20, "last": 20, "count": 1, "error": "MemoryError: no room", "traceback": "Traceback …\nMemoryError"},
        {"first": 21, "last": 22, "count": 2, "error": "ValueError: x", "traceback": "Traceback …\nMemoryError"},
        {"first": 40, "last": 40, "count": 1, "error": "MemoryError: no room", "traceback": "other"},
    ]
    assert failure_groups([]) == []
