#!/usr/bin/env python3
"""Check the demo data set, examples/demo/demo.json.

Usage (from the repository root):  python3 tools/check-demo.py [BUNDLE.json]
Needs the `jsonschema` package (pip install jsonschema). Exits 0 when all is
well, 1 listing every problem otherwise.

The server loads the bundle with `PUT Type/id` for each entry in order
(src/demo.rs), so the bundle must be:
  * a Bundle of type "collection" whose entries each hold a resource with an id,
    each Type/id once;
  * made of resources valid against the official R4 JSON Schema
    (conformance/fhir.schema.json, each resource checked against
    {"$ref": "#/definitions/<Type>"} plus the schema's definitions, draft-06);
  * complete: every element with minimum cardinality >= 1 present, in
    resources, backbone elements and data types (conformance/fhir-model.json,
    generated from the official StructureDefinitions);
  * closed: every Reference.reference (`Type/id`) names an entry that comes
    EARLIER in the bundle, of a type the element allows (target types are
    read from the official StructureDefinitions in ../shared/fhir-r4, or
    $FHIR_R4_DIR; that one check is skipped when they are absent);
  * FHIR JSON: no null, empty string, empty object or empty array anywhere;
  * consistent: Period start <= end (per-1), Task lastModified >= authoredOn
    (inv-1), CarePlan activity with a reference or a detail, not both (cpl-3),
    Observation with a value or dataAbsentReason, not both (obs-6);
  * demo-ready: every Patient has an MRN (http://hearth.example.org/mrn),
    unique; every Practitioner an NPI (http://hl7.org/fhir/sid/us-npi) with a
    valid check digit;
  * pretty-printed: exactly json.dumps(bundle, indent=2, ensure_ascii=False)
    followed by a newline.
"""
import datetime
import json
import os
import re
import sys
from pathlib import Path

try:
    import jsonschema
except ImportError:
    sys.exit("check-demo: needs the jsonschema package (pip install jsonschema)")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "examples" / "demo" / "demo.json"
SCHEMA = ROOT / "conformance" / "fhir.schema.json"
MODEL = ROOT / "conformance" / "fhir-model.json"
R4_DIR = Path(os.environ.get("FHIR_R4_DIR", ROOT.parent / "shared" / "fhir-r4"))

MRN_SYSTEM = "http://hearth.example.org/mrn"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
REL_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def add_fhir_version(node):
    """The published R4 schema predates the 4.0.1 technical correction: its FHIRVersion enums
    stop at 4.0.0. Add 4.0.1 where 4.0.0 is listed, as the server does (src/resource/schema.rs)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "enum" and isinstance(value, list) and "4.0.0" in value and "4.0.1" not in value:
                value.append("4.0.1")
            else:
                add_fhir_version(value)
    elif isinstance(node, list):
        for value in node:
            add_fhir_version(value)


# ------------------------------------------------------------------ element model
class Model:
    """conformance/fhir-model.json: {"types": {Name: [kind, [element, ...], (abstract)]}},
    element = [name, flags (min*8 + repeats 1 + xmlAttr 2 + xhtml 4), "T1|T2" or "#Path", children?]."""

    def __init__(self, path):
        self.types = json.loads(path.read_text())["types"]

    def kind(self, name):
        t = self.types.get(name)
        return t[0] if t else None

    def elements(self, name):
        return self.types[name][1]

    def resolve(self, content_ref):
        """'#Questionnaire.item' -> (children of that element, its defining path)."""
        parts = content_ref.lstrip("#").split(".")
        elements = self.elements(parts[0])
        for part in parts[1:]:
            element = next(e for e in elements if e[0] == part)
            elements = element[3]
        return elements, content_ref.lstrip("#")


def choice_type(element_name, key, types):
    """For a choice element 'value[x]' and a key 'valueQuantity', the type 'Quantity'."""
    base = element_name[:-3]
    if not key.startswith(base):
        return None
    suffix = key[len(base):]
    for t in types.split("|"):
        if t[:1].upper() + t[1:] == suffix:
            return t
    return None


# ------------------------------------------------------------------ reference targets
def load_targets(sd_dir):
    """{defining path: set of allowed target types, or None for any} for every Reference element
    of the base resources and data types."""
    targets = {}
    for f in sd_dir.glob("StructureDefinition-*.json"):
        sd = json.loads(f.read_text())
        if sd.get("derivation") != "specialization" or sd.get("kind") == "logical":
            continue
        for e in sd.get("snapshot", {}).get("element", []):
            refs = [t for t in e.get("type", []) if t.get("code") == "Reference"]
            if not refs:
                continue
            allowed = set()
            for t in refs:
                for p in t.get("targetProfile", []):
                    allowed.add(p.rsplit("/", 1)[-1])
            targets[e["path"]] = None if not allowed or "Resource" in allowed else allowed
    return targets


# ------------------------------------------------------------------ date helpers
def lower_bound(value):
    """The earliest instant a FHIR date/dateTime/instant can mean, as an aware datetime."""
    m = re.match(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
                 r"(Z|[+-]\d{2}:\d{2})?)?)?)?$", value)
    if not m:
        return None
    year, month, day, hh, mm, ss, frac, tz = m.groups()
    tzinfo = datetime.timezone.utc
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        tzinfo = datetime.timezone(sign * datetime.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    return datetime.datetime(int(year), int(month or 1), int(day or 1), int(hh or 0), int(mm or 0),
                             int(ss or 0), int(float(frac) * 1e6) if frac else 0, tzinfo=tzinfo)


def check_not_before(where, earlier, later, what):
    a, b = lower_bound(earlier), lower_bound(later)
    if a and b and a > b:
        problem(where, f"{what} ({earlier} is after {later})")


# ------------------------------------------------------------------ the walk
class Walker:
    def __init__(self, model, targets, index, order):
        self.model = model
        self.targets = targets  # None: not checked
        self.index = index  # "Type/id" -> entry position
        self.order = order  # position of the resource being walked

    def resource(self, res, where, contained_ids):
        rtype = res.get("resourceType")
        if self.model.kind(rtype) != "R":
            problem(where, f"unknown resourceType {rtype!r}")
            return
        ids = {c.get("id") for c in res.get("contained", []) if isinstance(c, dict)}
        self.obj(self.model.elements(rtype), res, where, rtype, ids | contained_ids)

    def obj(self, elements, obj, where, defpath, contained_ids):
        by_name = {e[0]: e for e in elements}
        for e in elements:
            name, flags, types = e[0], e[1], e[2]
            if flags // 8 < 1:
                continue
            if name.endswith("[x]"):
                present = any(choice_type(name, k.lstrip("_"), types) for k in obj)
            else:
                present = name in obj or "_" + name in obj
            if not present:
                problem(where, f"missing required element '{name}' (min {flags // 8})")
        for key, value in obj.items():
            if key == "resourceType" or key.startswith("_"):
                continue
            element, vtype = by_name.get(key), None
            if element is not None:
                vtype = element[2]
            else:
                for e in elements:
                    if e[0].endswith("[x]") and (t := choice_type(e[0], key, e[2])):
                        element, vtype = e, t
                        break
            if element is None:
                continue  # the schema reports unknown properties
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                here = f"{where}.{key}" + (f"[{i}]" if isinstance(value, list) else "")
                self.value(element, vtype, item, here, f"{defpath}.{element[0]}", contained_ids)

    def value(self, element, vtype, item, where, defpath, contained_ids):
        if not isinstance(item, dict):
            return  # primitives: the schema checks them
        if len(element) > 3:  # backbone element
            return self.obj(element[3], item, where, defpath, contained_ids)
        if vtype.startswith("#"):
            children, path = self.model.resolve(vtype)
            return self.obj(children, item, where, path, contained_ids)
        if vtype == "Resource":
            return self.resource(item, where, contained_ids)
        if self.model.kind(vtype) != "C":
            return
        if vtype == "Reference":
            self.reference(item, where, defpath, contained_ids)
        if vtype == "Period" and "start" in item and "end" in item:
            check_not_before(where, item["start"], item["end"], "per-1: Period start is after end")
        self.obj(self.model.elements(vtype), item, where, vtype, contained_ids)

    def reference(self, item, where, defpath, contained_ids):
        ref = item.get("reference")
        if ref is None:
            return
        if ref.startswith("#"):
            if ref[1:] not in contained_ids:
                problem(where, f"reference {ref!r}: no contained resource with that id")
            return
        m = REL_REF.match(ref)
        if not m:
            problem(where, f"reference {ref!r} is not a relative Type/id reference")
            return
        rtype, key = m.group(1), f"{m.group(1)}/{m.group(2)}"
        pos = self.index.get(key)
        if pos is None:
            problem(where, f"reference {ref!r}: no such entry in the bundle")
        elif pos >= self.order:
            problem(where, f"reference {ref!r}: entry {pos} is not loaded before this one "
                           f"(entry {self.order}); move it earlier")
        if "type" in item and item["type"] != rtype:
            problem(where, f"reference {ref!r} has type {item['type']!r}")
        if self.targets is not None:
            allowed = self.targets.get(defpath, None)
            if defpath in self.targets and allowed is not None and rtype not in allowed:
                problem(where, f"reference {ref!r}: {defpath} allows only {', '.join(sorted(allowed))}")


# ------------------------------------------------------------------ generic checks
def check_json_shape(value, where):
    """FHIR JSON: no nulls (outside arrays of primitives paired with _x), no empty strings,
    objects or arrays."""
    if value is None:
        problem(where, "null value")
    elif isinstance(value, str):
        if not value.strip():
            problem(where, "empty or blank string")
    elif isinstance(value, list):
        if not value:
            problem(where, "empty array")
        for i, v in enumerate(value):
            check_json_shape(v, f"{where}[{i}]")
    elif isinstance(value, dict):
        if not value:
            problem(where, "empty object")
        for k, v in value.items():
            check_json_shape(v, f"{where}.{k}")


def npi_valid(npi):
    if not re.fullmatch(r"\d{10}", npi):
        return False
    total = 0
    for i, ch in enumerate(reversed("80840" + npi[:9])):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == int(npi[9])


def check_invariants(res, where):
    rtype = res["resourceType"]
    if rtype == "Task" and "authoredOn" in res and "lastModified" in res:
        check_not_before(where, res["authoredOn"], res["lastModified"],
                         "inv-1: Task.lastModified is before authoredOn")
    if rtype == "CarePlan":
        for i, act in enumerate(res.get("activity", [])):
            if "reference" in act and "detail" in act:
                problem(f"{where}.activity[{i}]", "cpl-3: has both reference and detail")
    if rtype == "Observation":
        has_value = any(k.startswith("value") for k in res)
        if has_value and "dataAbsentReason" in res:
            problem(where, "obs-6: both a value and a dataAbsentReason")
        if not has_value and "dataAbsentReason" not in res and "component" not in res \
                and "hasMember" not in res:
            problem(where, "Observation has no value, component, member or dataAbsentReason")
    if rtype == "Patient":
        mrns = [i.get("value") for i in res.get("identifier", []) if i.get("system") == MRN_SYSTEM]
        if len(mrns) != 1:
            problem(where, f"expected exactly one identifier with system {MRN_SYSTEM}")
    if rtype == "Practitioner":
        npis = [i.get("value", "") for i in res.get("identifier", []) if i.get("system") == NPI_SYSTEM]
        if not npis:
            problem(where, f"no identifier with system {NPI_SYSTEM}")
        for npi in npis:
            if not npi_valid(npi):
                problem(where, f"NPI {npi!r} has no valid check digit (Luhn with prefix 80840)")


# ------------------------------------------------------------------ main
def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BUNDLE
    text = path.read_text(encoding="utf-8")
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as e:
        print(f"check-demo: {path}: not JSON: {e}")
        return 1
    if text != json.dumps(bundle, indent=2, ensure_ascii=False) + "\n":
        problem(str(path), "not pretty-printed as json.dumps(indent=2, ensure_ascii=False) + newline")

    schema = json.loads(SCHEMA.read_text())
    definitions = schema["definitions"]
    add_fhir_version(definitions)
    validators = {}

    def validate(rtype, res, where):
        if rtype not in definitions:
            problem(where, f"no schema definition for {rtype!r}")
            return
        if rtype not in validators:
            root = {"$schema": "http://json-schema.org/draft-06/schema#",
                    "$ref": f"#/definitions/{rtype}", "definitions": definitions}
            validators[rtype] = jsonschema.Draft6Validator(root)
        errors = sorted(validators[rtype].iter_errors(res), key=lambda e: list(e.absolute_path))
        for err in errors[:20]:
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            msg = err.message if len(err.message) < 300 else err.message[:300] + "..."
            problem(f"{where}{loc}", f"schema: {msg}")

    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "collection":
        problem("bundle", "must be a Bundle of type 'collection'")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        print(f"check-demo: {path}: no entries")
        return 1

    # The bundle itself, without the entry resources (each is checked against its own type).
    shell = dict(bundle, entry=[{k: v for k, v in e.items() if k != "resource"} for e in entries])
    validate("Bundle", shell, "Bundle")
    check_json_shape(bundle, "Bundle")

    index, full_urls, mrns, counts = {}, set(), {}, {}
    for pos, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        where = f"entry[{pos}]"
        if not isinstance(res, dict):
            problem(where, "no resource")
            continue
        rtype, rid = res.get("resourceType"), res.get("id")
        if not rtype or not rid:
            problem(where, "resource without resourceType or id")
            continue
        key = f"{rtype}/{rid}"
        if key in index:
            problem(where, f"{key} already at entry[{index[key]}]")
        index.setdefault(key, pos)
        counts[rtype] = counts.get(rtype, 0) + 1
        url = entry.get("fullUrl")
        if url is not None:
            if url in full_urls:
                problem(where, f"duplicate fullUrl {url}")
            full_urls.add(url)
            if not url.endswith("/" + key):
                problem(where, f"fullUrl {url} does not end with /{key}")
        for ident in res.get("identifier", []) if rtype == "Patient" else []:
            if ident.get("system") == MRN_SYSTEM:
                other = mrns.setdefault(ident.get("value"), key)
                if other != key:
                    problem(where, f"MRN {ident.get('value')} also used by {other}")

    model = Model(MODEL)
    targets = load_targets(R4_DIR / "structure-definitions") if (R4_DIR / "structure-definitions").is_dir() \
        else None
    for pos, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or not res.get("resourceType") or not res.get("id"):
            continue
        where = f"entry[{pos}] {res['resourceType']}/{res['id']}"
        validate(res["resourceType"], res, where)
        Walker(model, targets, index, pos).resource(res, where, set())
        check_invariants(res, where)

    summary = ", ".join(f"{n} {t}" for t, n in counts.items())
    if targets is None:
        print(f"check-demo: reference target types not checked ({R4_DIR}/structure-definitions not found)")
    if problems:
        for p in problems:
            print(p)
        print(f"check-demo: {path}: {len(problems)} problem(s) in {len(entries)} entries")
        return 1
    print(f"check-demo: {path}: OK, {len(entries)} resources ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
