# Burns CPU for event["ms"] milliseconds of wall time (default 100), for billing and scaling tests.
import time


def handler(event, context):
    ms = int(event.get("ms", 100)) if isinstance(event, dict) else 100
    end = time.monotonic() + ms / 1000.0
    n = 0
    while time.monotonic() < end:
        n += 1
    return {"burned_ms": ms, "iterations": n}
