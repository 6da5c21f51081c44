// Receives the com.example.greeting events `greet` emits, as structured CloudEvents, and logs
// each (`ignis logs record`).
exports.handler = async (event) => {
  const greeting = event.data && event.data.greeting;
  console.log(`recorded: ${greeting} (from ${event.source}, ${event.ignishops} hop)`);
  return { greeting };
};
