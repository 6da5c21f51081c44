#!/bin/sh
# {{name}}: the exec runtime runs this file once per invocation (any executable will do: a
# script, a static binary). The event arrives on stdin and stdout is the result; a non-zero exit
# status fails the invocation with the last lines of stderr as its message. stderr goes to the
# function's logs.
event=$(cat)
echo "{{name}} received ${#event} bytes" >&2
printf '{"message": "Hello from {{name}}!", "event": %s}\n' "${event:-null}"
