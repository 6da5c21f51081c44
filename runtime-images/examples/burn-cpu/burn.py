# Burns CPU for event["ms"] milliseconds (default 100), for billing and scaling tests: of wall
# time by default, or of the process's own CPU time with {"clock": "cpu"} (what a billing test
# wants on a loaded host, where a wall-clock burn gets less CPU than its duration).
import time


def handler(event, context):
    event = event if isinstance(event, dict) else {}
    ms = int(event.get("ms", 100))
    clock = time.process_time if event.get("clock") == "cpu" else time.monotonic
    end = clock() + ms / 1000.0
    n = 0
    while clock() < end:
        n += 1
    return {"burned_ms": ms, "iterations": n}
