// Sleeps event.ms milliseconds (default 100) without using CPU: wall time is billed, CPU is not.
exports.handler = async (event) => {
  const ms = (event && event.ms) || 100;
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { slept_ms: ms };
};
