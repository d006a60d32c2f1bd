// A few calls to the local AWS APIs (kinesalite, dynalite) without the AWS CLI: they check that
// a request is signed, not the signature.
//
//   node aws.js scan PORT TABLE [--count]       items of a DynamoDB table, one JSON line each
//   node aws.js put-record PORT STREAM KEY DATA one record (DATA as given, UTF-8) on a stream
const { call } = require('./call');

function fail(message) {
  console.error(`aws.js: ${message}`);
  process.exit(2);
}

// A DynamoDB item with its type tags taken off: {"id":{"S":"x"}} -> {"id":"x"}.
function plain(item) {
  const out = {};
  for (const [k, v] of Object.entries(item)) {
    if ('S' in v) out[k] = v.S;
    else if ('N' in v) out[k] = Number(v.N);
    else if ('BOOL' in v) out[k] = v.BOOL;
    else out[k] = v;
  }
  return out;
}

async function scan(port, table, countOnly) {
  let start;
  let count = 0;
  do {
    const page = await call(port, 'dynamodb', 'Scan',
      { TableName: table, ...(start ? { ExclusiveStartKey: start } : {}) });
    for (const item of page.Items || []) {
      count += 1;
      if (!countOnly) console.log(JSON.stringify(plain(item)));
    }
    start = page.LastEvaluatedKey;
  } while (start);
  if (countOnly) console.log(count);
}

async function main() {
  const [command, port, ...rest] = process.argv.slice(2);
  if (!/^\d+$/.test(port || '')) fail('usage: node aws.js scan PORT TABLE [--count] | put-record PORT STREAM KEY DATA');
  if (command === 'scan' && rest.length >= 1) {
    await scan(Number(port), rest[0], rest[1] === '--count');
  } else if (command === 'put-record' && rest.length === 3) {
    const [stream, key, data] = rest;
    const out = await call(Number(port), 'kinesis', 'PutRecord', {
      StreamName: stream, PartitionKey: key, Data: Buffer.from(data).toString('base64'),
    });
    console.log(`${out.ShardId} ${out.SequenceNumber}`);
  } else {
    fail('usage: node aws.js scan PORT TABLE [--count] | put-record PORT STREAM KEY DATA');
  }
}

main().catch((e) => fail(e.message));
