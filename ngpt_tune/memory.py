"""Allocations the device refused: a trial that does not fit in memory, told apart from a crash.

A trial whose memory allocation fails would fail the same way on every retry; the trainable
(``trainables/ngpt.py``) ends it as ``infeasible`` instead of raising (README, "When things go
wrong").
"""

from __future__ import annotations

import re

import torch

# what torch says when an allocation is refused outside the two error types below (the CPU
# allocator's RuntimeError; a CUDA library's "CUDA error: out of memory")
_OUT_OF_MEMORY_TEXT = ("can't allocate memory", "out of memory")


def out_of_memory(err: BaseException) -> str | None:
    """The error line of ``err`` when it (or an error it was raised from, e.g. inside a
    compiled graph) is a refused memory allocation, else None: CUDA's OutOfMemoryError,
    Python's MemoryError, or the CPU allocator's "can't allocate memory" RuntimeError."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        text = " ".join(str(cause).split())
        if isinstance(cause, (torch.cuda.OutOfMemoryError, MemoryError)) or (
                isinstance(cause, RuntimeError) and any(t in text for t in _OUT_OF_MEMORY_TEXT)):
            text = re.sub(r"^\[enforce fail at [^\]]*\] [^.]*\. ", "", text)  # c10's prefix
            return f"{type(cause).__name__}: {text}"[:300]
        cause = cause.__cause__ or cause.__context__
    return None
