# {{name}}: the python3 runtime imports this module once per container and calls handler (the
# "handler" of function.json: module.function) for each invocation, as AWS Lambda does. A JSON
# event arrives parsed; what the function returns is sent back as JSON; print() goes to the
# function's logs.


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print("%s: greeting %s" % (context.function_name, name))
    return {"message": "Hello, %s!" % name, "function": context.function_name}
