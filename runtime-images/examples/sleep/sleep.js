// Sleeps event.ms milliseconds (default 100) without using CPU: wall time is billed, CPU is not.
// Node's timers may fire up to a millisecond early (libuv measures from the loop's cached time),
// so it waits again for whatever is left: the function never sleeps less than it says.
exports.handler = async (event) => {
  const ms = (event && event.ms) || 100;
  const start = process.hrtime.bigint();
  for (;;) {
    const left = ms - Number(process.hrtime.bigint() - start) / 1e6;
    if (left <= 0) break;
    await new Promise((resolve) => setTimeout(resolve, Math.ceil(left)));
  }
  return { slept_ms: ms };
};
