// A fault-injecting proxy in front of a Kinesis API implementation, for tests: no emulator
// enforces per-shard throughput, so this one makes PutRecords fail the way Kinesis does.
//
//   node kinesis-fault-proxy.js <upstream port> <listen port, 0 = free> <k> <m>
//
// Every m-th PutRecords call is refused whole (HTTP 400 ProvisionedThroughputExceededException,
// nothing forwarded). In the other calls every k-th record (counted over all calls) is taken
// out before forwarding and reported back as failed with ProvisionedThroughputExceededException
// at its index, as Kinesis reports partial failures. k or m = 0 turns that fault off. All other
// requests pass through untouched. Prints "proxy listening on 127.0.0.1:<port>" when ready.
const http = require('http');

const [upstreamPort, listenPort, k, m] = process.argv.slice(2).map(Number);
let calls = 0;
let records = 0;

function forward(req, body, done) {
  const up = http.request(
    { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: { ...req.headers, 'content-length': body.length } },
    (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => done(res, Buffer.concat(chunks)));
    },
  );
  up.on('error', (e) => done(null, Buffer.from(String(e))));
  up.end(body);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body = Buffer.concat(chunks);
    const target = req.headers['x-amz-target'] || '';
    if (!target.endsWith('.PutRecords')) {
      return forward(req, body, (up, data) => {
        if (!up) { res.writeHead(502); return res.end(data); }
        res.writeHead(up.statusCode, up.headers);
        res.end(data);
      });
    }
    calls += 1;
    if (m > 0 && calls % m === 0) {
      const msg = JSON.stringify({ __type: 'ProvisionedThroughputExceededException', message: 'Rate exceeded for stream (injected)' });
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': 'ProvisionedThroughputExceededException' });
      return res.end(msg);
    }
    const request = JSON.parse(body.toString('utf8'));
    const failed = new Set();
    request.Records.forEach((_, i) => {
      records += 1;
      if (k > 0 && records % k === 0) failed.add(i);
    });
    const kept = request.Records.filter((_, i) => !failed.has(i));
    const send = (result) => {
      const out = [];
      let next = 0;
      request.Records.forEach((_, i) => {
        if (failed.has(i)) {
          out.push({ ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: 'Rate exceeded for shard (injected)' });
        } else {
          out.push(result.Records[next]);
          next += 1;
        }
      });
      const reply = JSON.stringify({ FailedRecordCount: (result.FailedRecordCount || 0) + failed.size, Records: out });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(reply);
    };
    if (kept.length === 0) return send({ FailedRecordCount: 0, Records: [] });
    body = Buffer.from(JSON.stringify({ ...request, Records: kept }));
    forward(req, body, (up, data) => {
      if (!up || up.statusCode !== 200) {
        res.writeHead(up ? up.statusCode : 502, up ? up.headers : {});
        return res.end(data);
      }
      send(JSON.parse(data.toString('utf8')));
    });
  });
});
server.listen(listenPort, '127.0.0.1', () => {
  console.log(`proxy listening on 127.0.0.1:${server.address().port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
