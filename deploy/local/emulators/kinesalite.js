// Starts kinesalite (a local implementation of the Kinesis API, in memory) on 127.0.0.1 only:
// its own CLI binds every interface. Usage: node kinesalite.js [port]; port 0 (the default)
// picks a free one. Prints "kinesalite listening on 127.0.0.1:<port>" once it accepts requests.
const kinesalite = require('kinesalite');

const port = Number(process.argv[2] || 0);
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
server.listen(port, '127.0.0.1', () => {
  console.log(`kinesalite listening on 127.0.0.1:${server.address().port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
