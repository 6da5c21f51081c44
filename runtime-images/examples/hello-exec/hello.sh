#!/bin/sh
# The exec runtime: the event on stdin, the result on stdout (OpenFaaS classic watchdog style).
input=$(cat)
printf 'Hello, %s! (invocation %s)\n' "${input:-world}" "$IGNIS_INVOCATION_ID"
