// Starts kinesalite (a local implementation of the Kinesis API, in memory) on 127.0.0.1 only:
// its own CLI binds every interface.
//
//   node kinesalite.js [PORT] [--stream NAME[:SHARDS]]...
//
// PORT 0 (the default) picks a free one. Each --stream is created (2 shards unless SHARDS says)
// and active before the line "kinesalite listening on 127.0.0.1:<port>" is printed: once that
// line is out, beacon can send to the streams.
const { call: callAt } = require('./call');
const kinesalite = require('kinesalite');

const args = process.argv.slice(2);
let port = 0;
const streams = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--stream') {
    const [name, shards] = (args[++i] || '').split(':');
    if (!name) fail('--stream needs a name: --stream NAME[:SHARDS]');
    streams.push({ name, shards: Number(shards || 2) });
  } else if (/^\d+$/.test(args[i])) {
    port = Number(args[i]);
  } else {
    fail(`unknown argument ${args[i]}; usage: node kinesalite.js [PORT] [--stream NAME[:SHARDS]]...`);
  }
}

function fail(message) {
  console.error(`kinesalite.js: ${message}`);
  process.exit(2);
}

// One API call to the server this script started.
function call(operation, body) {
  return callAt(server.address().port, 'kinesis', operation, body);
}

async function createStreams() {
  for (const { name, shards } of streams) {
    await call('CreateStream', { StreamName: name, ShardCount: shards });
    for (;;) {
      const d = await call('DescribeStreamSummary', { StreamName: name });
      if (d.StreamDescriptionSummary.StreamStatus === 'ACTIVE') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(`kinesalite: stream ${name} created with ${shards} shard(s)`);
  }
}

const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000 });
server.listen(port, '127.0.0.1', () => {
  createStreams().then(
    () => console.log(`kinesalite listening on 127.0.0.1:${server.address().port}`),
    (e) => fail(e.message),
  );
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
