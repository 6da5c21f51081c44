# Emits a CloudEvent through the runtime protocol; the controller stamps source, id and time.
import ignis


def handler(event, context):
    context.emit("com.example.greeting", {"hello": event.get("name", "world")})
    ignis.emit("com.example.note", "plain text data")
    return {"emitted": 2}
