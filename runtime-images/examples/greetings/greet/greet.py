# Receives com.example.hello events (service.json subscribes it) and emits a greeting, which the
# controller stamps (source /ignis/functions/greet, id, time, ignishops) and routes to `record`.


def handler(event, context):
    name = (event.get("data") or {}).get("name", "world")
    context.emit("com.example.greeting", {"greeting": "Hello, %s!" % name})
    return {"greeted": name}
