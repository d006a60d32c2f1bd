// Starts dynalite (a local implementation of the DynamoDB API, in memory) on 127.0.0.1 only:
// its own CLI binds every interface.
//
//   node dynalite.js [PORT] [--table NAME]...
//
// PORT 0 (the default) picks a free one. Each --table is created in the layout of the
// reference's event table (hash key `id` S, range key `customer_id` N) and is active before the
// line "dynalite listening on 127.0.0.1:<port>" is printed.
const { call: callAt } = require('./call');
const dynalite = require('dynalite');

const args = process.argv.slice(2);
let port = 0;
const tables = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--table') {
    const name = args[++i];
    if (!name) fail('--table needs a name: --table NAME');
    tables.push(name);
  } else if (/^\d+$/.test(args[i])) {
    port = Number(args[i]);
  } else {
    fail(`unknown argument ${args[i]}; usage: node dynalite.js [PORT] [--table NAME]...`);
  }
}

function fail(message) {
  console.error(`dynalite.js: ${message}`);
  process.exit(2);
}

// One API call to the server this script started.
function call(operation, body) {
  return callAt(server.address().port, 'dynamodb', operation, body);
}

async function createTables() {
  for (const name of tables) {
    await call('CreateTable', {
      TableName: name,
      AttributeDefinitions: [
        { AttributeName: 'id', AttributeType: 'S' },
        { AttributeName: 'customer_id', AttributeType: 'N' },
      ],
      KeySchema: [
        { AttributeName: 'id', KeyType: 'HASH' },
        { AttributeName: 'customer_id', KeyType: 'RANGE' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
    });
    for (;;) {
      const d = await call('DescribeTable', { TableName: name });
      if (d.Table.TableStatus === 'ACTIVE') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    console.log(`dynalite: table ${name} created`);
  }
}

const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.listen(port, '127.0.0.1', () => {
  createTables().then(
    () => console.log(`dynalite listening on 127.0.0.1:${server.address().port}`),
    (e) => fail(e.message),
  );
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
