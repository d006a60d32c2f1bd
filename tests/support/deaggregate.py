"""Deaggregates Kinesis records with the standard aws_kinesis_agg package.

Reads JSON lines {"partitionKey", "sequenceNumber", "data" (base64)} from stdin, one per Kinesis
record, and writes one JSON line {"partitionKey", "data" (base64)} per user record inside them.
"""
import json
import sys

from aws_kinesis_agg.deaggregator import deaggregate_records

records = []
for line in sys.stdin:
    r = json.loads(line)
    records.append({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": r["partitionKey"],
            "sequenceNumber": r["sequenceNumber"],
            "approximateArrivalTimestamp": 0,
            "data": r["data"],
        }
    })
for user in deaggregate_records(records):
    k = user["kinesis"]
    data = k["data"].decode("ascii") if isinstance(k["data"], bytes) else k["data"]
    print(json.dumps({"partitionKey": k["partitionKey"], "data": data}))
