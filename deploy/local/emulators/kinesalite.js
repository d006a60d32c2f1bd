// Starts kinesalite (a local implementation of the Kinesis API, in memory) on 127.0.0.1 only:
// its own CLI binds every interface.
//
//   node kinesalite.js [PORT] [--stream NAME[:SHARDS]]...
//
// PORT 0 (the default) picks a free one. Each --stream is created (2 shards unless SHARDS says)
// and active before the line "kinesalite listening on 127.0.0.1:<port>" is printed: once that
// line is out, beacon can send to the streams.
const http = require('http');
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

// One Kinesis API call. kinesalite checks that a request is signed, not the signature.
function call(operation, body) {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: server.address().port,
      method: 'POST',
      path: '/',
      headers: {
        'Content-Type': 'application/x-amz-json-1.1',
        'X-Amz-Target': `Kinesis_20131202.${operation}`,
        'X-Amz-Date': '20260101T000000Z',
        Authorization: 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=local',
        'Content-Length': Buffer.byteLength(payload),
      },
    }, (res) => {
      let text = '';
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        const answer = text ? JSON.parse(text) : {};
        if (res.statusCode === 200) resolve(answer);
        else reject(new Error(`${operation}: ${answer.__type || res.statusCode}: ${answer.message || ''}`));
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
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
