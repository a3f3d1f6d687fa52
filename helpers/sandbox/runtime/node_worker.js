/*
 * One Lambda execution environment for nodejs runtimes (run as a separate process).
 *
 * Started by helpers.sandbox.runtime.LambdaRuntime as
 *     node node_worker.js <protocol-fd> <marker-nonce> <handler> <sandbox-pid>
 * with the function's unzipped code as the working directory and Lambda's
 * environment variables set. Same protocol as python_worker.py (see there):
 * requests/responses are a JSON header line plus raw bytes on the socket at
 * <protocol-fd>; stdout/stderr are the function's log, cut per invocation by
 * "\0<nonce>:START:<id>" / "\0<nonce>:END:<id>" marker lines.
 *
 * Behaviour follows AWS's Node.js runtime interface client
 * (aws/aws-lambda-nodejs-runtime-interface-client): console lines are
 * "<ISO time>\t<request id>\t<LEVEL>\t<message>", errors are
 * {errorType, errorMessage, trace}, handlers may be async, promise-returning or
 * callback-style, and callback-style invocations finish when the callback has
 * been called and the event loop is empty (callbackWaitsForEmptyEventLoop).
 */
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const [fdArg, nonce, handlerString, sandboxPidArg] = process.argv.slice(2);
const startedAt = performance.now();
const marker = `\0${nonce}:`;
let currentRequestId; // "undefined" in log lines outside an invocation, as in Lambda

// --- log: console.* writes Lambda-formatted lines to stdout (synchronous for pipes on Linux) ---
const LEVELS = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE' };
for (const [method, level] of Object.entries(LEVELS)) {
  console[method] = (...args) => {
    process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}\n`);
  };
}

// --- the sandbox going away ends this worker (no prctl in Node: watch our parent instead) ---
const sandboxPid = Number(sandboxPidArg);
setInterval(() => { if (process.ppid !== sandboxPid) process.exit(1); }, 500).unref();

// --- errors ---
function fault(errorType, message) {
  const error = new Error(message);
  error.name = errorType;
  return error;
}

function isError(value) {
  return util.types.isNativeError(value) ||
    (value !== null && typeof value === 'object' && typeof value.name === 'string' &&
     typeof value.message === 'string');
}

/** Lambda's error document for a thrown/rejected/callback(err) value. */
function errorDocument(error) {
  try {
    if (isError(error)) {
      const stack = typeof error.stack === 'string' ? error.stack.split('\n') : [`${error.name}: ${error.message}`];
      return { errorType: error.name, errorMessage: error.message, trace: stack };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_err) {
    return { errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack' };
  }
}

function logInvokeError(error) {
  const doc = errorDocument(error);
  const formatted = { errorType: doc.errorType, errorMessage: doc.errorMessage, stack: doc.trace };
  console.error('Invoke Error', `\t${JSON.stringify(formatted)}`);
}

// --- loading the handler (init) ---
function usesEsm(file) {
  let dir = path.dirname(file);
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try { return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module'; } catch (_e) { return false; }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

async function loadModule(base) {
  for (const ext of ['', '.js', '.mjs', '.cjs']) {
    const file = base + ext;
    if (!fs.existsSync(file) || fs.statSync(file).isDirectory()) continue;
    if (ext === '.mjs' || (ext === '.js' && usesEsm(file))) return import(pathToFileURL(file).href);
    return require(file);
  }
  return undefined;
}

async function loadHandler() {
  const match = /^([^.]*)\.(.*)$/.exec(handlerString);
  if (!match) throw fault('Runtime.MalformedHandlerName', 'Bad handler');
  const [, modulePath, handlerPath] = match;
  let mod;
  try {
    mod = await loadModule(path.resolve(process.cwd(), modulePath));
  } catch (err) {
    if (err instanceof SyntaxError) throw fault('Runtime.UserCodeSyntaxError', String(err));
    if (err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND')) {
      throw fault('Runtime.ImportModuleError', String(err));
    }
    throw err;
  }
  if (mod === undefined) {
    throw fault('Runtime.ImportModuleError',
      `Error: Cannot find module '${modulePath}'\nRequire stack:\n- ${__filename}`);
  }
  const fn = handlerPath.split('.').reduce((obj, key) => (obj == null ? undefined : obj[key]), mod);
  if (fn === undefined) throw fault('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  if (typeof fn !== 'function') throw fault('Runtime.HandlerNotFound', `${handlerString} is not a function`);
  return fn;
}

// --- protocol ---
const sock = new net.Socket({ fd: Number(fdArg), readable: true, writable: true });
sock.on('end', () => process.exit(0));
sock.on('error', () => process.exit(1));

let handler;
let initError;
let initMs;
let pending; // the invocation in progress: {id, finish(ok, payload, fatal), callbackResult?}

function respond(requestId, ok, payload, started, fatal) {
  const body = Buffer.from(payload, 'utf8');
  process.stdout.write(`${marker}END:${requestId}\n`);
  const header = { ok, len: body.length, dur: performance.now() - started,
    mem: Math.ceil(process.resourceUsage().maxRSS / 1024), init: initMs, fatal };
  initMs = undefined;
  sock.write(Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), body]), () => {
    if (fatal) process.exit(129);
  });
}

function makeContext(request, onCallback) {
  const env = process.env;
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: request.arn,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: request.id,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: undefined,
    clientContext: undefined,
    getRemainingTimeInMillis: () => Math.max(0, request.deadline - Date.now()),
  };
  context.done = (err, result) => onCallback(err, result);
  context.succeed = (result) => onCallback(null, result);
  context.fail = (err) => onCallback(err === undefined || err === null ? 'handled' : err);
  return context;
}

function invoke(request, body) {
  currentRequestId = request.id;
  process.stdout.write(`${marker}START:${request.id}\n`);
  const started = performance.now();
  let finished = false;
  const finish = (ok, value, fatal = false) => {
    if (finished) return;
    finished = true;
    pending = undefined;
    sock.ref();
    if (ok) {
      let json;
      try {
        json = JSON.stringify(value);
      } catch (err) {
        const doc = { errorType: 'Runtime.MarshalError', errorMessage: `Unable to stringify response body as json: ${err.message}`, trace: [] };
        console.error('Invoke Error', `\t${JSON.stringify({ ...doc, stack: [] })}`);
        respond(request.id, false, JSON.stringify(doc), started, false);
        return;
      }
      respond(request.id, true, json === undefined ? 'null' : json, started, false);
    } else {
      if (initError === undefined) logInvokeError(value);
      respond(request.id, false, JSON.stringify(errorDocument(value)), started, fatal);
    }
  };
  if (initError !== undefined) {
    finish(false, initError, true);
    return;
  }
  let event;
  try {
    event = JSON.parse(body.toString('utf8'));
  } catch (err) {
    finish(false, fault('Runtime.UnmarshalError', `Unable to unmarshal input: ${err.message}`));
    return;
  }
  const state = { finish, callbackResult: undefined };
  const onCallback = (err, result) => {
    if (state.callbackResult !== undefined) return;
    state.callbackResult = err !== undefined && err !== null ? { ok: false, value: err } : { ok: true, value: result };
    if (!context.callbackWaitsForEmptyEventLoop) finish(state.callbackResult.ok, state.callbackResult.value);
  };
  const context = makeContext(request, onCallback);
  pending = state;
  sock.unref(); // so that 'beforeExit' tells us when the function's event loop is empty
  let returned;
  try {
    returned = handler(event, context, onCallback);
  } catch (err) {
    finish(false, err);
    return;
  }
  if (returned && typeof returned.then === 'function') {
    returned.then((value) => finish(true, value), (err) => finish(false, err));
  }
}

process.on('beforeExit', () => {
  if (pending === undefined) return;
  const result = pending.callbackResult || { ok: true, value: null };
  pending.finish(result.ok, result.value);
});

process.on('uncaughtException', (err) => {
  console.error('Uncaught Exception', `\t${JSON.stringify(errorDocument(err))}`);
  if (pending !== undefined) pending.finish(false, err, true);
  else process.exit(129);
});

process.on('unhandledRejection', (reason) => {
  const error = fault('Runtime.UnhandledPromiseRejection', isError(reason) ? `${reason.name}: ${reason.message}` : String(reason));
  if (pending !== undefined) pending.finish(false, error, true);
  else process.exit(128);
});

let buffer = Buffer.alloc(0);
function onData(chunk) {
  buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
  for (;;) {
    const newline = buffer.indexOf(10);
    if (newline < 0) return;
    const request = JSON.parse(buffer.subarray(0, newline).toString('utf8'));
    if (buffer.length < newline + 1 + request.len) return;
    const body = buffer.subarray(newline + 1, newline + 1 + request.len);
    buffer = buffer.subarray(newline + 1 + request.len);
    invoke(request, body);
  }
}

(async () => {
  try {
    handler = await loadHandler();
  } catch (err) {
    initError = err;
    const doc = errorDocument(err);
    console.error('Uncaught Exception', `\t${JSON.stringify({ errorType: doc.errorType, errorMessage: doc.errorMessage, stack: doc.trace })}`);
  }
  initMs = performance.now() - startedAt;
  sock.on('data', onData);
})();
