#!/usr/bin/node
// Ignis node runtime: calls an AWS Lambda Node.js handler over the Ignis runtime protocol.
//
// The handler (_HANDLER = "file.export", file relative to LAMBDA_TASK_ROOT) is loaded once,
// before the first invocation, and called as AWS Lambda's Node.js runtime
// (aws-lambda-nodejs-runtime-interface-client) calls it: async handlers, promise-returning
// handlers and callback-style (event, context, callback) handlers; the same context; the same
// error shape; CommonJS, .mjs and "type": "module" packages. Frames are described in
// docs/runtime-protocol.md; this file encodes them itself, with nothing but Node's built-ins.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const url = require('url');
const util = require('util');

const MAGIC = 0x49;
const VERSION = 1;
const T = { READY: 1, INIT_ERROR: 2, INVOKE: 3, RESULT: 4, ERROR: 5, EVENT: 6, SHUTDOWN: 7 };
const FRAME_OVERHEAD = 256 * 1024;
const FD = parseInt(process.env.IGNIS_RUNTIME_FD || '3', 10);
const MAX_BODY = parseInt(process.env.IGNIS_MAX_PAYLOAD || String(6 * 1024 * 1024), 10);

function frame(type, fields) {
  const bufs = fields.map((f) => (Buffer.isBuffer(f) ? f : Buffer.from(f == null ? '' : String(f), 'utf8')));
  let size = 0;
  for (const b of bufs) size += 4 + b.length;
  const out = Buffer.allocUnsafe(8 + size);
  out[0] = MAGIC;
  out[1] = VERSION;
  out[2] = type;
  out[3] = 0;
  out.writeUInt32BE(size, 4);
  let off = 8;
  for (const b of bufs) {
    out.writeUInt32BE(b.length, off);
    b.copy(out, off + 4);
    off += 4 + b.length;
  }
  return out;
}

let sock = null;
function send(type, ...fields) {
  sock.write(frame(type, fields));
}

// Lambda's error shapes (Errors.js of the Node.js runtime interface client).
class RuntimeError extends Error {}
function runtimeError(name, message) {
  const e = new RuntimeError(message);
  Object.defineProperty(e, 'name', { value: `Runtime.${name}` });
  return e;
}

function toErrorFields(error) {
  try {
    if (util.types.isNativeError(error) ||
        (error && typeof error.name === 'string' && typeof error.message === 'string' &&
         typeof error.stack === 'string')) {
      return [error.name, error.message, error.stack];
    }
    return [typeof error, String(error), ''];
  } catch (_) {
    return ['handled', 'callback called with Error argument, but there was a problem while ' +
            'retrieving one or more of its message, name, and stack', ''];
  }
}

function logError(prefix, error) {
  const [errorType, errorMessage, stack] = toErrorFields(error);
  console.error(prefix, '\t' + JSON.stringify({ errorType, errorMessage, stack: stack ? stack.split('\n') : [] }));
}

// Handler loading, as UserFunction.js: "dir/file.nested.fn", tried as extensionless, .js (CommonJS
// unless the nearest package.json says "type": "module"), .mjs, .cjs, then require.resolve.
function hasTypeModule(folder) {
  for (;;) {
    if (folder.endsWith('/node_modules')) return false;
    const pj = path.join(folder, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj)).type === 'module';
      } catch (_) {
        return false;
      }
    }
    const parent = path.resolve(folder, '..');
    if (parent === folder) return false;
    folder = parent;
  }
}

async function loadModule(appRoot, moduleRoot, mod) {
  const base = path.resolve(appRoot, moduleRoot, mod);
  if (fs.existsSync(base) && fs.statSync(base).isFile()) return require(base);
  const typeModule = fs.existsSync(base + '.js') && hasTypeModule(path.dirname(base + '.js'));
  if (!typeModule && fs.existsSync(base + '.js')) return require(base + '.js');
  if (typeModule) return await import(url.pathToFileURL(base + '.js').href);
  if (fs.existsSync(base + '.mjs')) return await import(url.pathToFileURL(base + '.mjs').href);
  if (fs.existsSync(base + '.cjs')) return require(base + '.cjs');
  return require(require.resolve(mod, { paths: [appRoot, path.resolve(appRoot, moduleRoot)] }));
}

async function loadHandler(appRoot, full) {
  if (full.includes('..')) {
    throw runtimeError('MalformedHandlerName', `'${full}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`);
  }
  const handlerString = path.basename(full);
  const moduleRoot = full.substring(0, full.indexOf(handlerString));
  const m = handlerString.match(/^([^.]*)\.(.*)$/);
  if (!m) throw runtimeError('MalformedHandlerName', 'Bad handler');
  let app;
  try {
    app = await loadModule(appRoot, moduleRoot, m[1]);
  } catch (e) {
    if (e instanceof SyntaxError) throw runtimeError('UserCodeSyntaxError', `${e.name}: ${e.message}`);
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw runtimeError('ImportModuleError', `Error: ${e.message}`);
    }
    throw e;
  }
  const fn = m[2].split('.').reduce((o, k) => o && o[k], app);
  if (!fn) throw runtimeError('HandlerNotFound', `${full} is undefined or not exported`);
  if (typeof fn !== 'function') throw runtimeError('HandlerNotFound', `${full} is not a function`);
  return fn;
}

function parseEvent(body, contentType) {
  // Lambda parses every event as JSON; Ignis invocations may carry any body, so one that is
  // not JSON (and not declared as JSON) arrives as a string.
  const text = body.toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    if (contentType && contentType.split(';')[0].trim().toLowerCase() === 'application/json') throw e;
    return text;
  }
}

// The context's environment part is fixed for the container's life: read it once, as
// process.env lookups are a measurable part of a 100 µs round trip.
const ENV = {
  functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
  functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
  memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
  logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
  logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
};
const DEFAULT_ARN = `arn:aws:lambda:local:000000000000:function:${ENV.functionName || ''}`;
let traceSet = false;

let current = null; // the invocation in progress: { id, done }

// Lambda's console (LogPatch.js): each record on stdout as "time\trequest id\tLEVEL\tmessage",
// newlines inside a record turned into \r so that one record stays one line.
function patchConsole() {
  const levels = { log: 'INFO', info: 'INFO', debug: 'DEBUG', warn: 'WARN', error: 'ERROR', trace: 'TRACE' };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => {
      const text = util.format(...args).replace(/\n/g, '\r');
      const id = current ? current.id : 'undefined';
      process.stdout.write(`${new Date().toISOString()}\t${id}\t${level}\t${text}\n`);
    };
  }
  console.fatal = (...args) => {
    const text = util.format(...args).replace(/\n/g, '\r');
    const id = current ? current.id : 'undefined';
    process.stdout.write(`${new Date().toISOString()}\t${id}\tFATAL\t${text}\n`);
  };
}
let handler = null;

function emit(type, data, contentType) {
  if (!current) throw new Error('ignis emit works only while an invocation runs');
  if (typeof type !== 'string' || !type) throw new TypeError('an event needs a non-empty type');
  let body;
  let ct;
  if (Buffer.isBuffer(data) || data instanceof Uint8Array) {
    body = Buffer.from(data);
    ct = 'application/octet-stream';
  } else if (typeof data === 'string') {
    body = Buffer.from(data, 'utf8');
    ct = 'text/plain; charset=utf-8';
  } else {
    body = Buffer.from(JSON.stringify(data === undefined ? null : data), 'utf8');
    ct = 'application/json';
  }
  send(T.EVENT, current.id, type, body, contentType || ct);
}

// The next frame starts once an invocation is reported: the socket keeps the process alive only
// between invocations, so that during one "the event loop is empty" means what it means on Lambda
// (callbackWaitsForEmptyEventLoop and 'beforeExit').
let beforeExit = null;
process.on('beforeExit', () => {
  const fn = beforeExit;
  beforeExit = null;
  if (fn) fn();
  else if (current) {
    // Nothing is left to run and nothing settled: Lambda reports a Node.js exit.
    const e = runtimeError('NodeJsExit', 'The Lambda runtime client detected an unexpected Node.js exit code. This is most commonly caused by a Promise that was never settled.');
    finish(current, e, undefined);
  }
});

function finish(inv, err, result) {
  if (inv.done) {
    console.error('Invocation has already been reported as done. Cannot call complete more than once per invocation.');
    return;
  }
  inv.done = true;
  beforeExit = null;
  if (err !== undefined && err !== null) {
    logError('Invoke Error', err);
    send(T.ERROR, inv.id, ...toErrorFields(err));
  } else {
    let body;
    try {
      body = Buffer.from(JSON.stringify(result === undefined ? null : result) ?? 'null', 'utf8');
    } catch (e) {
      send(T.ERROR, inv.id, 'Runtime.MarshalError', 'Unable to stringify response body', '');
      return next(inv);
    }
    if (body.length > MAX_BODY) {
      send(T.ERROR, inv.id, 'Function.ResponseSizeTooLarge', `Response payload size (${body.length} bytes) exceeded maximum allowed payload size (${MAX_BODY} bytes).`, '');
    } else {
      send(T.RESULT, inv.id, body, 'application/json');
    }
  }
  next(inv);
}

function next(inv) {
  if (current === inv) current = null;
  sock.ref();
}

function invoke(fields) {
  const id = fields[0].toString('utf8');
  const deadline = fields[1].readUInt32BE(0) * 4294967296 + fields[1].readUInt32BE(4);
  const headers = {};
  for (let i = 3; i + 1 < fields.length; i += 2) headers[fields[i].toString('latin1').toLowerCase()] = fields[i + 1].toString('utf8');

  const inv = { id, done: false };
  current = inv;
  sock.unref();
  if (headers['trace-id']) {
    process.env._X_AMZN_TRACE_ID = headers['trace-id'];
    traceSet = true;
  } else if (traceSet) {
    delete process.env._X_AMZN_TRACE_ID;
    traceSet = false;
  }

  let waitForEmptyEventLoop = true;
  let finished = false;
  const once = (fn) => (...args) => {
    if (finished) return;
    finished = true;
    fn(...args);
  };
  const done = once((err, result) => finish(inv, err, result));
  const callback = once((err, result) => {
    if (err !== undefined && err !== null) return finish(inv, err);
    if (!waitForEmptyEventLoop) return finish(inv, null, result);
    beforeExit = () => setImmediate(() => finish(inv, null, result));
  });
  // Lambda's default: a handler that neither settles nor calls back succeeds with null once
  // the event loop is empty.
  beforeExit = () => finish(inv, null, null);

  try {
    const parseJson = (s, name) => {
      if (s === undefined || s === '') return undefined;
      try {
        return JSON.parse(s);
      } catch (err) {
        throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
      }
    };
    const context = {
      get callbackWaitsForEmptyEventLoop() {
        return waitForEmptyEventLoop;
      },
      set callbackWaitsForEmptyEventLoop(v) {
        waitForEmptyEventLoop = v;
      },
      succeed: (result) => done(null, result),
      fail: (err) => done(err === undefined || err === null ? 'handled' : err, null),
      done: (err, result) => done(err, result),
      functionVersion: ENV.functionVersion,
      functionName: ENV.functionName,
      memoryLimitInMB: ENV.memoryLimitInMB,
      logGroupName: ENV.logGroupName,
      logStreamName: ENV.logStreamName,
      clientContext: parseJson(headers['client-context'], 'ClientContext'),
      identity: parseJson(headers['cognito-identity'], 'CognitoIdentity'),
      invokedFunctionArn: headers['invoked-function-arn'] || DEFAULT_ARN,
      awsRequestId: id,
      getRemainingTimeInMillis: () => deadline - Date.now(),
      emit: (type, data, contentType) => emit(type, data, contentType),
    };
    const event = parseEvent(fields[2], headers['content-type']);
    const result = handler(event, context, callback);
    if (result && typeof result.then === 'function') {
      result.then((v) => done(null, v), (e) => done(e === undefined || e === null ? 'handled' : e));
    }
  } catch (err) {
    callback(err);
  }
}

// Uncaught errors end the invocation with an error and the container with it, as on Lambda.
function fatal(err, code) {
  if (current && !current.done) {
    current.done = true;
    logError('Uncaught Exception', err);
    send(T.ERROR, current.id, ...toErrorFields(err));
  } else {
    logError('Uncaught Exception', err);
  }
  sock.end(() => process.exit(code));
  setTimeout(() => process.exit(code), 1000).unref();
}
process.on('uncaughtException', (err) => fatal(err, 129));
process.on('unhandledRejection', (reason) => {
  const e = reason instanceof Error ? reason : Object.assign(new Error(String(reason)), { name: 'Runtime.UnhandledPromiseRejection' });
  fatal(e, 128);
});

function startReader() {
  let buf = Buffer.alloc(0);
  sock.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(4);
      if (buf[0] !== MAGIC || buf[1] !== VERSION || buf[3] !== 0 || buf[2] < 1 || buf[2] > 7 ||
          size > MAX_BODY + FRAME_OVERHEAD) {
        console.error('ignis node runtime: malformed frame');
        process.exit(1);
      }
      if (buf.length < 8 + size) break;
      const type = buf[2];
      const payload = buf.subarray(8, 8 + size);
      buf = buf.subarray(8 + size);
      const fields = [];
      for (let off = 0; off < payload.length;) {
        if (payload.length - off < 4) { console.error('ignis node runtime: truncated field'); process.exit(1); }
        const n = payload.readUInt32BE(off);
        if (n > payload.length - off - 4) { console.error('ignis node runtime: field past frame'); process.exit(1); }
        fields.push(payload.subarray(off + 4, off + 4 + n));
        off += 4 + n;
      }
      if (type === T.SHUTDOWN) {
        sock.end(() => process.exit(0));
        return;
      }
      if (type !== T.INVOKE || fields.length < 3 || fields[1].length !== 8) {
        console.error(`ignis node runtime: unexpected frame type ${type}`);
        process.exit(1);
      }
      invoke(fields);
    }
  });
  sock.on('end', () => process.exit(0));
  sock.on('error', (e) => {
    console.error(`ignis node runtime: ${e.message}`);
    process.exit(1);
  });
}

async function main() {
  sock = new net.Socket({ fd: FD, readable: true, writable: true });
  sock.setNoDelay && sock.setNoDelay(true);
  // Lambda's global for response streaming: handlers that use it load, and are refused below
  // with a clear error rather than failing on a missing global.
  const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
  globalThis.awslambda = globalThis.awslambda || {
    streamifyResponse: (h) => {
      h[STREAMING] = 'response';
      return h;
    },
  };
  patchConsole();
  const appRoot = process.env.LAMBDA_TASK_ROOT || '/var/task';
  try {
    process.chdir(appRoot);
  } catch (_) { /* a missing task root shows as an import error below */ }
  try {
    handler = await loadHandler(appRoot, process.env._HANDLER || '');
    if (handler[STREAMING]) {
      throw runtimeError('MalformedStreamingHandler', 'response streaming (awslambda.streamifyResponse) is not supported by Ignis yet');
    }
  } catch (err) {
    logError('Init Error', err);
    send(T.INIT_ERROR, ...toErrorFields(err));
    sock.end(() => process.exit(1));
    return;
  }
  send(T.READY, `node ${process.version}`);
  startReader();
}

main();
