#!/usr/bin/env python3
"""Copies the official R4 SearchParameters into conformance/, keeping only the fields the server
reads (the Bundle from the R4 specification, 4.0.1; CC0). Run from the repo root:
    python3 tools/gen-search-params.py ../shared/fhir-r4/search-parameters.json conformance/search-parameters.json
"""
import json
import sys

KEEP = ["resourceType", "id", "url", "name", "code", "base", "type", "description", "expression",
        "target", "multipleOr", "multipleAnd", "comparator", "modifier", "chain", "component"]

src, dst = sys.argv[1], sys.argv[2]
bundle = json.load(open(src, encoding="utf-8"))
entries = []
for entry in bundle["entry"]:
    res = entry["resource"]
    entries.append({"resource": {k: res[k] for k in KEEP if k in res}})
out = {"resourceType": "Bundle", "id": bundle.get("id", "searchParams"), "type": "collection",
       "entry": entries}
with open(dst, "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    f.write("\n")
print(f"{len(entries)} SearchParameters -> {dst}")

# The CompartmentDefinitions (code, and per resource type the parameters that link to the
# compartment) are trimmed the same way:
#   for f in ../shared/fhir-r4/compartments/*.json: keep resourceType, id, url, name, code and
#   resource[].{code,param} → conformance/compartments/<same name>
