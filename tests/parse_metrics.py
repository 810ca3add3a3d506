"""Parses Prometheus text exposition with the official Python client's parser (independent of
our renderer) for the tests.

usage: parse_metrics.py < metrics.txt

Prints one JSON object: {"families": {name: type}, "samples": [[name, labels, value], ...]}.
A line the parser rejects makes it exit non-zero with the parser's message.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
json.dump({"families": families, "samples": samples}, sys.stdout)
