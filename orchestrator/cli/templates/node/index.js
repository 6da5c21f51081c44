// {{name}}: the node runtime loads this file once per container and calls its export "handler"
// (the "handler" of function.json: file.export) for each invocation, as AWS Lambda does. A JSON
// event arrives parsed; what the promise resolves to is sent back as JSON; console.log goes to
// the function's logs.
exports.handler = async (event, context) => {
  const name = (event && event.name) || 'world';
  console.log(`${context.functionName}: greeting ${name}`);
  return { message: `Hello, ${name}!`, function: context.functionName };
};
