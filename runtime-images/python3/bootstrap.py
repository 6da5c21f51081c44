#!/usr/bin/python3 -Su
"""Ignis python3 runtime: calls an AWS Lambda Python handler over the Ignis runtime protocol.

The handler (_HANDLER = "module.function", module relative to LAMBDA_TASK_ROOT) is imported once,
before the first invocation, and called as function(event, context) the way AWS Lambda's Python
runtime (awslambdaric) calls it: the same context attributes, the same JSON marshalling, the same
error shape. Frames are described in docs/runtime-protocol.md; this file encodes them itself so the
runtime needs nothing but the standard library.
"""

import decimal
import gc
import importlib
import json
import logging
import os
import struct
import sys
import time
import traceback

MAGIC, VERSION = 0x49, 1
READY, INIT_ERROR, INVOKE, RESULT, ERROR, EVENT, SHUTDOWN = 1, 2, 3, 4, 5, 6, 7
HEADER = struct.Struct(">BBBBI")
U32 = struct.Struct(">I")
FRAME_OVERHEAD = 256 * 1024

FD = int(os.environ.get("IGNIS_RUNTIME_FD", "3"))
MAX_BODY = int(os.environ.get("IGNIS_MAX_PAYLOAD", str(6 * 1024 * 1024)))


class ProtocolError(Exception):
    pass


def _frame(mtype, fields):
    parts = [b""]
    size = 0
    for f in fields:
        if isinstance(f, str):
            f = f.encode("utf-8", "surrogateescape")
        parts.append(U32.pack(len(f)))
        parts.append(f)
        size += 4 + len(f)
    parts[0] = HEADER.pack(MAGIC, VERSION, mtype, 0, size)
    return b"".join(parts)


def _send(mtype, *fields):
    data = memoryview(_frame(mtype, fields))
    while data:
        n = os.write(FD, data)
        data = data[n:]


class _Reader:
    """Reads frames from the protocol socket; a malformed stream ends the runtime."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = bytearray()

    def next(self):
        while True:
            if len(self.buf) >= 8:
                magic, version, mtype, flags, size = HEADER.unpack_from(self.buf)
                if magic != MAGIC or version != VERSION or flags != 0 or not 1 <= mtype <= 7:
                    raise ProtocolError("malformed frame header")
                if size > MAX_BODY + FRAME_OVERHEAD:
                    raise ProtocolError("frame of %d bytes is over the limit" % size)
                if len(self.buf) >= 8 + size:
                    payload = bytes(self.buf[8 : 8 + size])
                    del self.buf[: 8 + size]
                    return mtype, _fields(payload)
                want = 8 + size - len(self.buf)
            else:
                want = 65536
            chunk = os.read(self.fd, max(want, 65536))
            if not chunk:
                if self.buf:
                    raise ProtocolError("truncated frame at end of file")
                return None, None
            self.buf += chunk


def _fields(payload):
    out = []
    off, end = 0, len(payload)
    while off < end:
        if end - off < 4:
            raise ProtocolError("truncated field")
        (n,) = U32.unpack_from(payload, off)
        off += 4
        if n > end - off:
            raise ProtocolError("field runs past the frame")
        out.append(payload[off : off + n])
        off += n
    return out


# Lambda's error types (awslambdaric lambda_runtime_exception.FaultException).
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
MARSHAL_ERROR = "Runtime.MarshalError"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"


class Fault(Exception):
    def __init__(self, etype, msg, trace=None):
        super().__init__(msg)
        self.etype, self.msg, self.trace = etype, msg, trace or []


class _Encoder(json.JSONEncoder):
    """Lambda encodes Decimal as a JSON number (its simplejson use_decimal path)."""

    def default(self, o):
        if isinstance(o, decimal.Decimal):
            if o.is_nan():
                return float("nan")
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


_encoder = _Encoder()


def _marshal(response):
    if isinstance(response, (bytes, bytearray)):
        return bytes(response), "application/unknown"
    try:
        return _encoder.encode(response).encode("utf-8"), "application/json"
    except Exception as e:
        raise Fault(MARSHAL_ERROR, "Unable to marshal response: {}".format(e))


def _unmarshal(body, content_type):
    # Lambda parses every event as JSON. Ignis invocations may carry any body (and HTTP clients
    # such as curl -d label JSON as a form), so a body that parses as JSON is the decoded event
    # whatever its content type; one that does not is handed over as text (bytes if not UTF-8),
    # unless it was declared JSON, which is Lambda's unmarshal error. As the node runtime does.
    try:
        return json.loads(body)
    except Exception as e:
        if content_type and content_type.split(";")[0].strip().lower() == "application/json":
            raise Fault(UNMARSHAL_ERROR, "Unable to unmarshal input: {}".format(e))
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body


class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]


class Client(object):
    __slots__ = [
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]


def _obj_from_dict(cls, d):
    if d is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, d.get(field))
    return obj


# What the context takes from the environment, which is fixed for the container's life: read
# once (os.environ lookups are a measurable part of a 100 µs round trip).
_ENV = {
    k: os.environ.get(k)
    for k in (
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
    )
}
_DEFAULT_ARN = "arn:aws:lambda:local:000000000000:function:" + (
    _ENV["AWS_LAMBDA_FUNCTION_NAME"] or ""
)


class LambdaContext(object):
    """The context object of AWS Lambda's Python runtime, plus emit()."""

    def __init__(self, invoke_id, client_context, cognito_identity, deadline_ms, arn):
        self.aws_request_id = invoke_id
        self.log_group_name = _ENV["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = _ENV["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.function_name = _ENV["AWS_LAMBDA_FUNCTION_NAME"]
        self.memory_limit_in_mb = _ENV["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.function_version = _ENV["AWS_LAMBDA_FUNCTION_VERSION"]
        self.invoked_function_arn = arn
        self.tenant_id = None
        self.client_context = _obj_from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _obj_from_dict(Client, self.client_context.client)
        self.identity = _obj_from_dict(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        delta = self._deadline_ms - int(time.time() * 1000)
        return delta if delta > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def emit(self, type, data=None, content_type=None):
        """Emits an event (Ignis): routed by the controller like an external CloudEvent."""
        emit(type, data, content_type)

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id={},log_group_name={},log_stream_name={},"
            "function_name={},memory_limit_in_mb={},function_version={},"
            "invoked_function_arn={},client_context={},identity={}])".format(
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
            )
        )


_current_id = None


def emit(type, data=None, content_type=None):
    """Sends an event to the controller: bytes as they are, str as text, anything else as JSON."""
    if _current_id is None:
        raise RuntimeError("ignis.emit() works only while an invocation runs")
    if not isinstance(type, str) or not type:
        raise ValueError("an event needs a non-empty type")
    if isinstance(data, (bytes, bytearray)):
        body, ct = bytes(data), "application/octet-stream"
    elif isinstance(data, str):
        body, ct = data.encode("utf-8"), "text/plain; charset=utf-8"
    else:
        body, ct = _encoder.encode(data).encode("utf-8"), "application/json"
    _send(EVENT, _current_id, type, body, content_type or ct)


def _install_ignis_module():
    mod = type(sys)("ignis")
    mod.emit = emit
    mod.__doc__ = "Ignis runtime helpers: emit(type, data=None, content_type=None)."
    sys.modules["ignis"] = mod


def _get_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise Fault(MALFORMED_HANDLER_NAME, "Bad handler '{}': {}".format(handler, e))
    if modname.split(".")[0] in sys.builtin_module_names:
        raise Fault(
            BUILT_IN_MODULE_CONFLICT,
            "Cannot use built-in module {} as a handler module".format(modname),
        )
    try:
        m = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise Fault(IMPORT_MODULE_ERROR, "Unable to import module '{}': {}".format(modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise Fault(
            USER_CODE_SYNTAX_ERROR, "Syntax error in module '{}': {}".format(modname, e), trace
        )
    try:
        return getattr(m, fname)
    except AttributeError:
        raise Fault(HANDLER_NOT_FOUND, "Handler '{}' missing on module '{}'".format(fname, modname))


def _user_frames(tb):
    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if not frame.filename.endswith("/bootstrap") and "bootstrap.py" not in frame.filename:
            return traceback.format_list(frames[i:])
    return []


def _log_error(etype, msg, trace):
    # The shape of Lambda's "[ERROR] Type: message" log record, lines joined by \r.
    lines = ["[ERROR] {}: {}".format(etype, msg) if msg else "[ERROR] " + etype]
    if trace:
        lines.append("Traceback (most recent call last):")
        for t in trace:
            lines.extend(t.splitlines())
    sys.stdout.write("\r".join(lines) + "\n")


class _LoggerHandler(logging.Handler):
    def emit(self, record):
        sys.stdout.write(self.format(record))


class _LoggerFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_id or ""
        return True


def _setup_logging():
    logging.Formatter.converter = time.gmtime
    h = _LoggerHandler()
    h.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    h.addFilter(_LoggerFilter())
    logging.getLogger().addHandler(h)


_trace_set = [False]  # whether _X_AMZN_TRACE_ID was set by an earlier invocation


def _invoke(handler, fields):
    global _current_id
    invoke_id = fields[0].decode("utf-8", "replace")
    (deadline_hi, deadline_lo) = struct.unpack(">II", fields[1])
    deadline_ms = deadline_hi << 32 | deadline_lo
    body = fields[2]
    headers = {}
    for i in range(3, len(fields) - 1, 2):
        headers[fields[i].decode("latin-1").lower()] = fields[i + 1].decode("utf-8", "replace")

    _current_id = invoke_id
    trace_id = headers.get("trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
        _trace_set[0] = True
    elif _trace_set[0]:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
        _trace_set[0] = False
    arn = headers.get("invoked-function-arn") or _DEFAULT_ARN
    try:
        try:
            cc = headers.get("client-context")
            cc = json.loads(cc) if cc else None
            ci = headers.get("cognito-identity")
            ci = json.loads(ci) if ci else None
        except Exception as e:
            raise Fault(CONTEXT_UNMARSHAL_ERROR, "Unable to parse context JSON: {}".format(e))
        context = LambdaContext(invoke_id, cc, ci, deadline_ms, arn)
        event = _unmarshal(body, headers.get("content-type"))
        result, ct = _marshal(handler(event, context))
        if len(result) > MAX_BODY:
            raise Fault(
                RESPONSE_TOO_LARGE,
                "Response payload size ({} bytes) exceeded maximum allowed payload size "
                "({} bytes).".format(len(result), MAX_BODY),
            )
    except Fault as f:
        _log_error(f.etype, f.msg, f.trace)
        _send(ERROR, invoke_id, f.etype, f.msg, "".join(f.trace))
    except Exception:
        etype, value, tb = sys.exc_info()
        trace = _user_frames(tb)
        _log_error(etype.__name__, str(value), trace)
        _send(ERROR, invoke_id, etype.__name__, str(value), "".join(trace))
    else:
        _send(RESULT, invoke_id, result, ct)
    finally:
        _current_id = None


def main():
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    handler_name = os.environ.get("_HANDLER", "")
    sys.path.insert(0, task_root)
    if sys.flags.isolated:
        # Forked from a template, whose interpreter ignored PYTHONPATH (-I): honour it as an
        # exec'd runtime's interpreter would have, ahead of the standard library.
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(":") if p]
        sys.path[1:1] = extra
    try:
        os.chdir(task_root)
    except OSError:
        pass
    _install_ignis_module()
    _setup_logging()
    try:
        handler = _get_handler(handler_name)
    except Fault as f:
        _log_error(f.etype, f.msg, f.trace)
        _send(INIT_ERROR, f.etype, f.msg, "".join(f.trace))
        return 1
    except Exception:
        # An exception while the module runs its top-level code (Lambda: init error).
        etype, value, tb = sys.exc_info()
        trace = _user_frames(tb)
        _log_error(etype.__name__, str(value), trace)
        _send(INIT_ERROR, etype.__name__, str(value), "".join(trace))
        return 1

    _send(READY, "python3 %d.%d.%d" % sys.version_info[:3])
    reader = _Reader(FD)
    while True:
        try:
            mtype, fields = reader.next()
        except ProtocolError as e:
            sys.stderr.write("ignis python3 runtime: %s\n" % e)
            return 1
        if mtype is None or mtype == SHUTDOWN:
            return 0
        if mtype != INVOKE or len(fields) < 3 or len(fields[1]) != 8 or len(fields) % 2 == 0:
            sys.stderr.write("ignis python3 runtime: unexpected frame type %d\n" % mtype)
            return 1
        _invoke(handler, fields)


# ---- Template mode (docs/architecture.md, "Templates") ----
#
# `python3 -I -S -u /ignis/bootstrap --template`, started by the shim as root of the template's
# user namespace: the standard library and this file are loaded once, never the function's code
# (-I -S: no site, no script directory, no PYTHON* variables, and nothing here reads /var/task).
# It tells the controller it is ready (b"R" on fd 3), then serves fork requests there: one
# TEMPLATE_REQUEST with SCM_RIGHTS fds (runtime socket, stdout, stderr, sync pipe, control
# socket). For each, libignis-child.so's ignis_child_fork makes the container in C (B, cloned in
# new namespaces, is pid 1, sends its pidfd, waits for the controller's go, does the rest of a
# container's setup, drops every privilege and will report the runtime's end) and returns in
# B's child, the runtime's process, which re-seeds what was seeded at start and runs main() as
# an exec'd runtime would. The template itself never serves an invocation.

# The request's layout (orchestrator/container/template.c, struct template_request).
TEMPLATE_REQUEST = struct.Struct("=c7xQQQII65s7x")


def _runtime_main():
    import random
    import signal

    # What an exec'd runtime starts with: SIGCHLD as the kernel has it and SIGINT as Python
    # has it (the template ignores both), a collector that runs (the template's objects are
    # frozen out of its reach, so that it does not copy their pages), and its own seeds. (The
    # str hash seed cannot change in a running interpreter: a template serves one function
    # version only.)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    gc.enable()
    random.seed()
    try:
        code = main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def template_main():
    import ctypes
    import random  # noqa: F401 (loaded here so that containers do not pay for it)
    import signal
    import socket

    lib = ctypes.CDLL("/ignis/libignis-child.so")
    lib.ignis_child_fork.restype = ctypes.c_int
    lib.ignis_child_fork.argtypes = [ctypes.c_int * 5, ctypes.c_char_p] + [ctypes.c_uint64] * 3 + [
        ctypes.c_uint32
    ] * 2
    api = ctypes.pythonapi
    _install_ignis_module()
    # The kernel reaps the template's children (each container's B), which report themselves.
    # ignisd ends the template (it closes the socket): a Ctrl-C at the terminal ignisd runs
    # from, which reaches its whole process group, is ignisd's to act on, not the template's.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=FD)
    # Everything loaded so far is left out of the collector's reach: a collection in a container
    # would otherwise write to every object's header and copy each page they are on.
    gc.freeze()
    os.write(FD, b"R")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, TEMPLATE_REQUEST.size, 5)
        except InterruptedError:
            continue
        if not msg:
            return 0
        if len(msg) == TEMPLATE_REQUEST.size and len(fds) == 5 and msg[:1] == b"F":
            req = TEMPLATE_REQUEST.unpack(msg)
            # What os.fork does for the interpreter around a fork, around the C one.
            api.PyOS_BeforeFork()
            pid = lib.ignis_child_fork((ctypes.c_int * 5)(*fds), req[6].rstrip(b"\0"), *req[1:6])
            if pid == 0:
                try:
                    api.PyOS_AfterFork_Child()
                    _runtime_main()
                finally:
                    os._exit(125)  # never back into the template's loop
            api.PyOS_AfterFork_Parent()
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    if sys.argv[1:] == ["--template"]:
        gc.disable()
        sys.exit(template_main())
    sys.exit(main())
