"""What gzip and brotli save on a realistic JSON event stream, and what they cost.

``python -m bench.compression``. The stream is 2,000 order notifications (nested JSON, ids and
times that change, the rest repeated), encoded as the framework encodes them. It is compressed
the way a stream with ``compress=True`` is, by the same encoders (``asgi/_encodings.py``): a
flush per write, so that no event waits. Two cases: a sparse stream (one event per write, the
worst case for compression) and a burst coalesced in writes of 16 events. Prints bytes on the
wire, the ratio, and CPU-µs per event, for each coding.
"""

from __future__ import annotations

import time

from trio_dwex import SseEvent
from trio_dwex.asgi._encodings import choose_encoder

EVENTS = 2_000


def events() -> list[bytes]:
    encoded = []
    for n in range(EVENTS):
        note = {
            "type": "order.updated",
            "order": {
                "id": f"ord_{n:06d}",
                "status": ("placed", "paid", "shipped", "delivered")[n % 4],
                "items": [{"sku": f"sku-{n % 37}", "quantity": 1 + n % 3, "price": 12.5}],
                "carrier": "parcel-express",
            },
            "customer": {"id": f"cus_{n % 113}", "name": "Ada Lovelace", "tier": "gold"},
            "at": f"2026-12-04T03:{n // 60 % 60:02d}:{n % 60:02d}Z",
        }
        encoded.append(SseEvent(data=note, event="order", id=str(n)).encode())
    return encoded


def measure(chunks: list[bytes], coding: str) -> tuple[int, float] | None:
    """Bytes on the wire and CPU seconds, compressing ``chunks`` as the stream's writes;
    ``None`` if ``coding`` is not available here (brotli without its package)."""
    encoder = choose_encoder(coding, prefer_brotli=True)
    if encoder is None or encoder.name.decode() != coding:
        return None
    start = time.process_time()
    wire = sum(len(encoder.encode(chunk)) for chunk in chunks) + len(encoder.finish())
    return wire, time.process_time() - start


def main() -> None:
    encoded = events()
    raw = sum(map(len, encoded))
    batches = [b"".join(encoded[i : i + 16]) for i in range(0, len(encoded), 16)]
    print(f"{EVENTS:,} order events, {raw / EVENTS:.0f} bytes each as SSE, {raw:,} bytes in all")
    print("| coding | writes | bytes | of the plain bytes | CPU-µs per event |")
    print("|---|---|---:|---:|---:|")
    for coding in ("gzip", "br"):
        for label, chunks in (("one event each (sparse)", encoded), ("16 events each", batches)):
            measured = measure(chunks, coding)
            if measured is None:
                print(f"| {coding} | {label} | not measured: pip install brotli | | |")
                continue
            wire, cpu = measured
            print(
                f"| {coding} | {label} | {wire:,} | {wire / raw:.1%} | {cpu / EVENTS * 1e6:.1f} |"
            )


if __name__ == "__main__":
    main()
