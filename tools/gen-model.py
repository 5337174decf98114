#!/usr/bin/env python3
"""Generate conformance/fhir-model.json, the compact element model used by
src/resource/model.rs (XML <-> JSON conversion, required-element checks).

Usage: python3 tools/gen-model.py <structure-definitions dir> <output file>

Only the base definitions are kept (derivation "specialization", plus the
root Element/Resource definitions which carry no derivation): profiles,
extension definitions and logical models describe nothing that appears on
the wire under its own element names.

Output format (minified JSON):
  {"format": 2, "types": {TypeName: [kind, [element, ...]] or
                                     [kind, [element, ...], 1] when abstract}}
  kind: "P" primitive-type, "C" complex-type, "R" resource
  element: [name, flags, types] or [name, flags, types, [child element, ...]]
    name  - last path segment, i.e. the JSON name; choice elements keep "[x]"
    flags - min * 16 + 1 (max != "1", i.e. repeats) + 2 (xmlAttr) + 4 (xhtml)
            + 8 (isSummary)
    types - type codes joined by "|" (FHIRPath System.* codes mapped to their
            FHIR primitive), or "#Path" for a contentReference
  Elements are listed in snapshot order, which is the XML element order;
  children of BackboneElement/Element-typed elements are nested.
"""
import glob
import json
import os
import sys

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
# Used when a System.* type carries no fhir-type extension (e.g. xhtml.id).
SYSTEM_TYPES = {
    "String": "string",
    "Boolean": "boolean",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
}
KINDS = {"primitive-type": "P", "complex-type": "C", "resource": "R"}


def type_code(t):
    code = t["code"]
    if not code.startswith(SYSTEM_PREFIX):
        return code
    for ext in t.get("extension", []):
        if ext.get("url") == FHIR_TYPE_EXT:
            return ext.get("valueUrl") or ext.get("valueUri")
    return SYSTEM_TYPES.get(code[len(SYSTEM_PREFIX):], "string")


def encode(elem):
    """Encode one snapshot element (without its children)."""
    rep = elem.get("representation", [])
    types = [type_code(t) for t in elem.get("type", [])]
    flags = int(elem["min"]) * 16
    if elem["max"] != "1" and elem["max"] != "0":
        flags |= 1
    if "xmlAttr" in rep:
        flags |= 2
    if "xhtml" in rep or types == ["xhtml"]:
        flags |= 4
    if elem.get("isSummary"):
        flags |= 8
    if "contentReference" in elem:
        tys = "#" + elem["contentReference"].split("#", 1)[1]
    else:
        tys = "|".join(types)
    return [elem["path"].rsplit(".", 1)[1], flags, tys]


def build(sd):
    elements = sd["snapshot"]["element"]
    root = elements[0]["path"]
    nodes = {root: []}
    for elem in elements[1:]:
        path = elem["path"]
        parent = path.rsplit(".", 1)[0]
        if parent not in nodes:
            sys.exit(f"{sd['name']}: {path} appears before its parent")
        enc = encode(elem)
        nodes[path] = []
        enc_children = nodes[path]
        nodes[parent].append((enc, enc_children))
    return finish(nodes[root])


def finish(items):
    out = []
    for enc, children in items:
        if children:
            enc = enc + [finish(children)]
        out.append(enc)
    return out


def wanted(sd):
    if sd.get("resourceType") != "StructureDefinition":
        return False
    if sd.get("kind") not in KINDS:
        return False
    if sd.get("derivation", "specialization") != "specialization":
        return False
    return sd.get("type") == sd.get("name") and "snapshot" in sd


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen-model.py <structure-definitions dir> <output file>")
    src, dst = sys.argv[1], sys.argv[2]
    types = {}
    for path in sorted(glob.glob(os.path.join(src, "*.json"))):
        with open(path, encoding="utf-8") as f:
            sd = json.load(f)
        if not wanted(sd):
            continue
        entry = [KINDS[sd["kind"]], build(sd)]
        if sd.get("abstract"):
            entry.append(1)
        types[sd["type"]] = entry
    if not types:
        sys.exit(f"no StructureDefinitions found in {src}")
    model = {"format": 2, "types": dict(sorted(types.items()))}
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(model, f, separators=(",", ":"), ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(types)} types to {dst}")


if __name__ == "__main__":
    main()
