// One call to a local AWS API (kinesalite or dynalite) on 127.0.0.1: a JSON request with the
// service's target header. Both check that a request is signed, not the signature.
const http = require('http');

const SERVICES = {
  kinesis: { type: 'application/x-amz-json-1.1', prefix: 'Kinesis_20131202' },
  dynamodb: { type: 'application/x-amz-json-1.0', prefix: 'DynamoDB_20120810' },
};

function call(port, service, operation, body) {
  const { type, prefix } = SERVICES[service];
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/',
      headers: {
        'Content-Type': type,
        'X-Amz-Target': `${prefix}.${operation}`,
        'X-Amz-Date': '20260101T000000Z',
        Authorization: `AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/${service}/aws4_request, SignedHeaders=host, Signature=local`,
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

module.exports = { call };
