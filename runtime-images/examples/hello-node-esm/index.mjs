// An ES module handler (index.mjs), callback style.
export const handler = (event, context, callback) => {
  callback(null, { message: 'Hello from an ES module!', requestId: context.awsRequestId });
};
