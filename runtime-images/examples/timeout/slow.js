// Runs past its 1 s timeout_ms: the controller ends it (504).
exports.handler = async () => {
  await new Promise((resolve) => setTimeout(resolve, 30000));
  return 'too late';
};
