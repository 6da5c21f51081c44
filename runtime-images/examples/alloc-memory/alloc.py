# Allocates and touches event["mb"] MiB (default 64): past memory_mb the container is OOM-killed.
def handler(event, context):
    mb = int(event.get("mb", 64)) if isinstance(event, dict) else 64
    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return {"allocated_mb": mb}
