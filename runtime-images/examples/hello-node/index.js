// A Lambda-style Node.js handler (CommonJS, async): file "index", export "handler".
const started = Date.now(); // module code runs once per container

exports.handler = async (event, context) => ({
  message: `Hello, ${(event && event.name) || 'world'}!`,
  requestId: context.awsRequestId,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  memoryLimitInMB: context.memoryLimitInMB,
  invokedFunctionArn: context.invokedFunctionArn,
  logGroupName: context.logGroupName,
  callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
  remainingMs: context.getRemainingTimeInMillis(),
  containerStarted: started,
});
