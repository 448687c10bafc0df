"""Give freed memory back to the OS: glibc's ``malloc_trim``, now and then, in a thread.

CPython hands objects larger than 512 bytes (encoded events, request bodies) to ``malloc``.
When thousands of stalled clients are dropped, their buffers are freed, but glibc keeps the
pages: they are scattered through the heap, and ``free`` gives back only the heap's top.
Measured with ``python -m bench.stalled``: 500 dropped clients left the server at 264 MiB
resident, against 42 MiB before them; one ``malloc_trim(0)`` brought it to 61 MiB. The memory
was reusable all along, but a host running several workers, or a container with a memory
limit, counts resident pages.

So our server calls ``malloc_trim(0)`` every `ServerLimits.memory_trim_interval` seconds, in
a worker thread (ctypes releases the GIL; the call only walks free chunks and returns their
pages). Where the C library is not glibc (musl, macOS) there is no such call and nothing runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

import trio

__all__ = ["malloc_trim", "trim_memory_every"]

logger = logging.getLogger("trio_dwex.serving")


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


#: glibc's ``malloc_trim``, or ``None`` where the C library has none.
malloc_trim = _find_malloc_trim()


async def trim_memory_every(interval: float) -> None:
    """Give free heap pages back to the OS every ``interval`` seconds, until cancelled."""
    if malloc_trim is None:
        return
    trim = malloc_trim
    while True:
        await trio.sleep(interval)
        # Not abandoned on cancel: no thread outlives the server; a trim takes milliseconds.
        await trio.to_thread.run_sync(trim, 0)
