use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use super::*;

const SEARCH_PARAMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-r4/search-parameters.json");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-r4/examples");

fn read_json(path: &str) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn example(name: &str) -> Option<Value> {
    let v = read_json(&format!("{EXAMPLES}/{name}.json"));
    if v.is_none() {
        eprintln!("skipping: example {name} not found under {EXAMPLES}");
    }
    v
}

fn run<'a>(expr: &str, res: &'a Value) -> Vec<Item<'a>> {
    let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    evaluate(&parsed, res).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// Renders items as text: primitives by value, complex nodes as compact JSON.
fn texts(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Item::Node(n) if n.value.is_object() || n.value.is_array() => n.value.to_string(),
            Item::Resolved { ty, id, .. } => format!("{ty}/{}", id.as_deref().unwrap_or("?")),
            other => functions::to_text(other).unwrap_or_else(|| format!("{other:?}")),
        })
        .collect()
}

fn check(expr: &str, res: &Value, expected: &[&str]) {
    assert_eq!(texts(&run(expr, res)), expected, "{expr}");
}

fn types_of<'a>(items: &[Item<'a>]) -> Vec<&'static str> {
    items.iter().map(|i| i.type_name().unwrap_or("?")).collect()
}

/// (base types, code, expression) of every official SearchParameter.
fn search_params() -> Option<Vec<(Vec<String>, String, String)>> {
    let Some(bundle) = read_json(SEARCH_PARAMS) else {
        eprintln!("skipping: {SEARCH_PARAMS} not found");
        return None;
    };
    let entries = bundle["entry"].as_array()?;
    let mut out = Vec::new();
    for e in entries {
        let r = &e["resource"];
        let Some(expr) = r["expression"].as_str() else { continue };
        let bases = r["base"].as_array()?.iter().filter_map(|b| b.as_str().map(str::to_string)).collect();
        out.push((bases, r["id"].as_str().unwrap_or("").to_string(), expr.to_string()));
    }
    Some(out)
}

fn all_examples() -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(Path::new(EXAMPLES)) else { return Vec::new() };
    let mut files: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    files.iter().filter_map(|p| read_json(p.to_str()?)).collect()
}

fn applies(bases: &[String], rt: &str) -> bool {
    bases.iter().any(|b| b == rt || b == "Resource" || (b == "DomainResource" && rt != "Bundle"))
}

#[test]
fn every_official_expression_parses() {
    let Some(params) = search_params() else { return };
    assert!(params.len() > 1300);
    for (_, id, expr) in &params {
        if let Err(e) = parse(expr) {
            panic!("{id}: {expr}: {e}");
        }
    }
}

#[test]
fn official_expressions_evaluate_on_all_examples() {
    let Some(params) = search_params() else { return };
    let parsed: Vec<_> = params.iter().map(|(b, id, e)| (b, id, parse(e).unwrap())).collect();
    let examples = all_examples();
    let (mut evals, mut non_empty) = (0, 0);
    for ex in &examples {
        let rt = ex["resourceType"].as_str().unwrap_or_default();
        for (bases, id, expr) in parsed.iter().filter(|(b, _, _)| applies(b, rt)) {
            let items = evaluate(expr, ex).unwrap_or_else(|e| panic!("{id} on {rt}/{}: {e}", ex["id"]));
            evals += 1;
            non_empty += usize::from(!items.is_empty());
            let _ = bases;
        }
    }
    println!("{} examples, {evals} evaluations, {non_empty} non-empty", examples.len());
    assert!(examples.is_empty() || non_empty > 500);
}

/// `cargo test --release -- --ignored --nocapture throughput`
#[test]
#[ignore]
fn throughput() {
    let Some(params) = search_params() else { return };
    let parsed: Vec<_> = params.iter().map(|(b, _, e)| (b, parse(e).unwrap())).collect();
    let examples = all_examples();
    let work: Vec<(&Value, Vec<&Expr>)> = examples
        .iter()
        .map(|ex| {
            let rt = ex["resourceType"].as_str().unwrap_or_default();
            (ex, parsed.iter().filter(|(b, _)| applies(b, rt)).map(|(_, e)| e).collect())
        })
        .collect();
    let start = Instant::now();
    let (mut evals, mut items) = (0u64, 0usize);
    for _ in 0..20 {
        for (ex, exprs) in &work {
            for e in exprs {
                items += evaluate(e, ex).map(|v| v.len()).unwrap_or(0);
                evals += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{evals} evaluations ({items} items) in {secs:.3}s = {:.0} evals/s", evals as f64 / secs);
}

#[test]
fn patient_paths_and_types() {
    let Some(p) = example("Patient-example") else { return };
    check("Patient.identifier.value", &p, &["12345"]);
    assert_eq!(types_of(&run("Patient.identifier", &p)), ["Identifier"]);
    check("Patient.name.where(use='official').family", &p, &["Chalmers"]);
    check("Patient.name.given", &p, &["Peter", "James", "Jim", "Peter", "James"]);
    check("Patient.name.given.distinct()", &p, &["Peter", "James", "Jim"]);
    assert_eq!(types_of(&run("Patient.name", &p)), ["HumanName"; 3]);
    assert_eq!(types_of(&run("Patient.birthDate", &p)), ["date"]);
    check("Patient.telecom.where(system='phone').value.count()", &p, &["3"]);
    check("Patient.name.first().given.last()", &p, &["James"]);
    check("Patient.name[1].given", &p, &["Jim"]);
    check("Patient.name.tail().use", &p, &["usual", "maiden"]);
    check("Observation.status", &p, &[]);
    check("Resource.id | DomainResource.id", &p, &["example"]);
    check("Patient.deceased.exists() and Patient.deceased != false", &p, &["false"]);
    check("Patient.contact.name.family", &p, &["du Marché"]);
    assert_eq!(types_of(&run("Patient.contact", &p)), ["BackboneElement"]);
    assert_eq!(types_of(&run("Patient.contact.address", &p)), ["Address"]);
}

#[test]
fn primitive_extensions_and_extension_function() {
    let Some(p) = example("Patient-example") else { return };
    let url = "http://hl7.org/fhir/StructureDefinition/patient-birthTime";
    check(&format!("Patient.birthDate.extension('{url}').value"), &p, &["1974-12-25T14:35:45-05:00"]);
    assert_eq!(types_of(&run(&format!("Patient.birthDate.extension('{url}').value"), &p)), ["dateTime"]);
    check("Patient.contact.name.family.extension.value", &p, &["VV"]);
    check("Patient.birthDate.hasValue()", &p, &["true"]);
    check("Patient.name.hasValue()", &p, &["false"]);
    let Some(g) = example("Observation-example-genetics-1") else { return };
    let gene = "http://hl7.org/fhir/StructureDefinition/observation-geneticsGene";
    check(&format!("Observation.extension('{gene}').value.coding.display"), &g, &["EGFR"]);
    assert_eq!(types_of(&run(&format!("Observation.extension('{gene}').value"), &g)), ["CodeableConcept"]);
    let only_ext =
        json!({"resourceType": "Patient", "_gender": {"extension": [{"url": "u", "valueCode": "x"}]}});
    check("Patient.gender.extension('u').value", &only_ext, &["x"]);
    check("Patient.gender.hasValue()", &only_ext, &["false"]);
}

#[test]
fn choice_elements() {
    let Some(o) = example("Observation-example") else { return };
    let q = run("Observation.value as Quantity", &o);
    assert_eq!(types_of(&q), ["Quantity"]);
    check("(Observation.value as Quantity).value", &o, &["185"]);
    check("Observation.value.code", &o, &["[lb_av]"]);
    check("Observation.value as CodeableConcept", &o, &[]);
    check("Observation.value > 100 'lbs'", &o, &[]);
    check("Observation.value > 100 '[lb_av]'", &o, &["true"]);
    check("Observation.effective", &o, &["2016-03-28"]);
    check("Observation.effective >= @2016-01-01", &o, &["true"]);
    let Some(b) = example("Observation-bloodgroup") else { return };
    check("(Observation.value as CodeableConcept).text", &b, &["A"]);
    let Some(bp) = example("Observation-blood-pressure") else { return };
    check("Observation.component.value.ofType(Quantity).value", &bp, &["107", "60"]);
    check("Observation.component.where(code.coding.code contains '8480-6').value.value", &bp, &["107"]);
    let Some(i) = example("Immunization-example") else { return };
    check("Immunization.occurrence", &i, &["2013-01-10"]);
    assert_eq!(types_of(&run("Immunization.occurrence", &i)), ["dateTime"]);
    let Some(c) = example("CarePlan-example") else { return };
    assert_eq!(types_of(&run("CarePlan.activity.detail.scheduled", &c)), ["Timing"]);
    let Some(c1) = example("CarePlan-f001") else { return };
    check("CarePlan.activity.detail.scheduled", &c1, &["2011-06-27T09:30:10+01:00"]);
    assert_eq!(types_of(&run("CarePlan.activity.detail.scheduled", &c1)), ["string"]);
    let cm = json!({"resourceType": "ConceptMap", "sourceUri": "http://x/vs", "targetCanonical": "http://y"});
    check("(ConceptMap.source as uri)", &cm, &["http://x/vs"]);
    check("(ConceptMap.target as uri)", &cm, &[]);
    check("(ConceptMap.target as canonical)", &cm, &["http://y"]);
    let cond = json!({"resourceType": "Condition", "onsetAge": {"value": 52, "unit": "a"}});
    assert_eq!(types_of(&run("Condition.onset.as(Age) | Condition.onset.as(Range)", &cond)), ["Age"]);
    check("Condition.onset.as(dateTime)", &cond, &[]);
}

#[test]
fn references_and_resolve() {
    let Some(o) = example("Observation-example") else { return };
    check("Observation.subject.where(resolve() is Patient)", &o, &[r#"{"reference":"Patient/example"}"#]);
    check("Observation.subject.where(resolve() is Group)", &o, &[]);
    check("Observation.subject.resolve().id", &o, &["example"]);
    let Some(t) = example("Task-example1") else { return };
    check("Task.for.reference", &t, &["Patient/example"]);
    assert_eq!(types_of(&run("Task.for", &t)), ["Reference"]);
    check("Task.owner.resolve()", &t, &["Organization/1832473e-2fe0-452d-abe9-3cdb9879522f"]);
    let Some(c) = example("CarePlan-example") else { return };
    let addr =
        json!({"resourceType": "CarePlan", "contained": c["contained"], "addresses": [{"reference": "#p1"}]});
    check("CarePlan.addresses.resolve().code.text", &addr, &["Obesity"]);
    assert_eq!(types_of(&run("CarePlan.addresses.resolve()", &addr)), ["Condition"]);
    check("CarePlan.contained.ofType(Condition).id", &c, &["p1"]);
    let abs =
        json!({"resourceType": "Observation", "subject": {"reference": "http://s/fhir/Group/7/_history/2"}});
    check("Observation.subject.resolve()", &abs, &["Group/7"]);
    let bundle = json!({"resourceType": "Bundle", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "a", "gender": "male"}},
        {"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:1"}}}]});
    check("Bundle.entry[0].resource.id", &bundle, &["a"]);
    check("Bundle.entry.resource.ofType(Observation).subject.resolve().gender", &bundle, &["male"]);
    check("Bundle.entry.resource.where(resourceType = 'Patient').count()", &bundle, &["1"]);
}

#[test]
fn custom_resolver() {
    let target = json!({"resourceType": "Patient", "id": "x", "gender": "other"});
    let obs = json!({"resourceType": "Observation", "subject": {"reference": "Patient/x"}});
    let lookup = |r: &str| (r == "Patient/x").then_some(&target);
    let env = Env { resolver: Some(&lookup), variables: vec![("who".into(), vec![Item::Str("x".into())])] };
    let expr = parse("Observation.subject.resolve().gender | %who").unwrap();
    let out = evaluate_env(&expr, &obs, &env).unwrap();
    assert_eq!(texts(&out.items), ["other", "x"]);
    let out = evaluate_env(&parse("Observation.code.memberOf('http://vs')").unwrap(), &obs, &env).unwrap();
    assert!(out.items.is_empty() && out.incomplete);
}

#[test]
fn literals_logic_and_operators() {
    let r = json!({"resourceType": "Basic"});
    let cases: &[(&str, &str)] = &[
        ("true and false", "false"),
        ("true or {}", "true"),
        ("({} and true).empty()", "true"),
        ("false implies {}", "true"),
        ("true xor true", "false"),
        ("(1 | 2 | 2 | 3).count()", "3"),
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("7 div 2", "3"),
        ("7 mod 2", "1"),
        ("7 / 2", "3.5"),
        ("-5 + 2", "-3"),
        ("- - -5", "-5"),
        ("iif(true, iif(true, iif(true, 1, 0), 0), 0)", "1"),
        ("(1).where((1).where(true).exists())", "1"),
        ("'a' + 'b' & {} & 'c'", "abc"),
        (r"'a\'b\n'.length()", "4"),
        (r"'\u0041'", "A"),
        ("1 < 2 and 2.5 >= 2.5 and 'abc' < 'abd'", "true"),
        ("1 = 1.0", "true"),
        ("'Abc' ~ 'aBC'", "true"),
        ("'a' !~ 'b'", "true"),
        ("2 in (1 | 2)", "true"),
        ("(1 | 2) contains 3", "false"),
        ("iif(1 > 2, 'y', 'n')", "n"),
        ("iif({}.exists(), 'y', 'n')", "n"),
        ("@2024-01-01 < @2024-02-01", "true"),
        ("@2024-01-01T10:00:00Z = @2024-01-01T11:00:00+01:00", "true"),
        ("(@2024-01 = @2024-01-15).empty()", "true"),
        ("@2024-01-31 + 1 month", "2024-02-29"),
        ("@T10:30 > @T09:00", "true"),
        ("5 'mg' = 5 'mg'", "true"),
        ("'hello'.substring(1, 3)", "ell"),
        ("'hello'.startsWith('he') and 'hello'.contains('ll')", "true"),
        ("'Hello'.upper() + 'Hello'.lower()", "HELLOhello"),
        ("'a,b'.split(',').count()", "2"),
        ("'abc'.matches('^[a-c]+$') and '2024-01'.matches('\\\\d{4}-\\\\d{2}')", "true"),
        ("'abc'.matches('x|y')", "false"),
        ("(1 | 2 | 3).where($this > 1).select($this * 10)", "20"),
        ("(1 | 2 | 3).all($this > 0)", "true"),
        ("(1 | 2 | 3).exists($this > 2)", "true"),
        ("{}.empty() and (1).exists()", "true"),
        ("(1 | 2 | 3).aggregate($this + $total, 0)", "6"),
        ("1.toString() + '2'", "12"),
        ("'12'.toInteger() + 1", "13"),
        ("(3.7).round()", "4"),
        ("true.not()", "false"),
        ("(1 | 2).single().empty()", "ERR"),
        ("%ucum", "http://unitsofmeasure.org"),
        ("today() < now() or today() = today()", "true"),
    ];
    for (expr, want) in cases {
        let got = match parse(expr).and_then(|e| evaluate(&e, &r)) {
            Ok(items) => texts(&items).join(","),
            Err(_) => "ERR".to_string(),
        };
        let want = if *expr == "(1 | 2 | 3).where($this > 1).select($this * 10)" { "20,30" } else { want };
        assert_eq!(got, want, "{expr}");
    }
}

#[test]
fn children_descendants_and_trace() {
    let Some(p) = example("Patient-example") else { return };
    let kids = run("Patient.name[0].children()", &p);
    assert_eq!(types_of(&kids), ["code", "string", "string", "string"]);
    check("Patient.descendants().ofType(Period).count()", &p, &["6"]);
    let expr = parse("Patient.name.trace('names').given.first()").unwrap();
    let out = evaluate_env(&expr, &p, &Env::default()).unwrap();
    assert_eq!(out.trace.len(), 1);
    assert_eq!(out.trace[0].0, "names");
}

#[test]
fn parse_errors_have_positions() {
    let pos = |src: &str| match parse(src) {
        Err(FhirPathError::Parse { pos, .. }) => pos,
        other => panic!("{src}: expected parse error, got {other:?}"),
    };
    assert_eq!(pos("Patient.name.where(use = 'off"), 25);
    assert_eq!(pos("Patient.name # 1"), 13);
    assert_eq!(pos("Patient.name.frobnicate()"), 13);
    assert_eq!(pos("Patient.name.where()"), 13);
    assert_eq!(pos("(1 + 2"), 6);
    assert_eq!(pos("1 +"), 3);
    assert_eq!(pos("Patient.name is"), 15);
    assert_eq!(pos("@2024-13-01"), 0);
    assert_eq!(pos("'\\q'"), 1);
    let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    assert!(matches!(parse(&deep), Err(FhirPathError::Parse { .. })));
    let negs = format!("{}1", "-".repeat(1000));
    assert!(parse(&negs).is_err());
    let ok = format!("{}1{}", "(".repeat(60), ")".repeat(60));
    assert!(parse(&ok).is_ok());
}

#[test]
fn evaluation_errors() {
    let r = json!({"resourceType": "Basic"});
    let err = |src: &str| evaluate(&parse(src).unwrap(), &r).unwrap_err();
    assert!(matches!(err("(1 | 2).single()"), FhirPathError::Eval(_)));
    assert!(matches!(err("1 + 'a'"), FhirPathError::Eval(_)));
    assert!(matches!(err("(1 | 2) < 3"), FhirPathError::Eval(_)));
    assert!(matches!(err("%nope"), FhirPathError::Eval(_)));
    assert!(matches!(err("'a'.matches('(')"), FhirPathError::Eval(_)));
}

#[test]
fn garbage_never_panics() {
    let r = json!({"resourceType": "Patient", "name": [{"given": ["a"]}]});
    let pieces = [
        "(", ")", "[", "]", ".", "'x'", "1", "@2024", "name", "where", "is", "as", "|", "-", "{", "}", "%",
        "$this", ",", "`a`",
    ];
    let mut seed = 7u64;
    for _ in 0..3000 {
        let mut src = String::new();
        for _ in 0..(seed % 9 + 1) {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            src.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
        }
        if let Ok(e) = parse(&src) {
            let _ = evaluate(&e, &r);
        }
    }
}

const STRUCTURE_DEFS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-r4/structure-definitions");

/// (element path, key, expression) of every constraint in the official
/// StructureDefinition snapshots of base types (profiles such as vitalsigns
/// do not apply to every example, so they are left out).
fn invariants() -> Vec<(String, String, String)> {
    let Ok(dir) = std::fs::read_dir(STRUCTURE_DEFS) else {
        eprintln!("skipping: {STRUCTURE_DEFS} not found");
        return Vec::new();
    };
    let mut out = Vec::new();
    for file in dir.filter_map(|e| e.ok()) {
        let Some(sd) = file.path().to_str().and_then(read_json) else { continue };
        if sd["derivation"].as_str() == Some("constraint") {
            continue;
        }
        for el in sd["snapshot"]["element"].as_array().into_iter().flatten() {
            for c in el["constraint"].as_array().into_iter().flatten() {
                if let (Some(path), Some(key), Some(expr)) =
                    (el["path"].as_str(), c["key"].as_str(), c["expression"].as_str())
                {
                    out.push((path.to_string(), key.to_string(), expr.to_string()));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn official_invariants_parse_and_hold_on_examples() {
    let invs = invariants();
    let mut parsed = Vec::new();
    for (path, key, expr) in &invs {
        // Invariants pass unless they evaluate to false (empty is fine).
        match parse(&format!("{path}.select({expr})")) {
            Ok(e) => parsed.push((path.split('.').next().unwrap_or(""), key, e)),
            Err(e) => panic!("{key} ({path}): {expr}: {e}"),
        }
    }
    let (mut checked, mut failures) = (0, Vec::new());
    for ex in all_examples() {
        let rt = ex["resourceType"].as_str().unwrap_or_default();
        let applicable = |r: &&str| *r == rt || *r == "DomainResource" || *r == "Resource";
        for (_, key, e) in parsed.iter().filter(|(r, _, _)| applicable(r)) {
            checked += 1;
            match evaluate(e, &ex) {
                Ok(items) if !items.iter().any(|i| matches!(i, Item::Bool(false))) => {}
                other => failures.push(format!("{key} on {rt}/{}: {other:?}", ex["id"])),
            }
        }
    }
    println!("{} invariants, {checked} checks, {} failures", invs.len(), failures.len());
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn invariants_detect_violations() {
    let bad = json!({"resourceType": "Patient", "contact": [{"gender": "male"}], "name": [{}]});
    let pat1 = "name.exists() or telecom.exists() or address.exists() or organization.exists()";
    check(&format!("Patient.contact.select({pat1})"), &bad, &["false"]);
    check("Patient.name.select(hasValue() or (children().count() > id.count()))", &bad, &["false"]);
    let ok =
        json!({"resourceType": "Patient", "contact": [{"name": {"family": "x"}}], "name": [{"text": "y"}]});
    check(&format!("Patient.contact.select({pat1})"), &ok, &["true"]);
    check("Patient.name.select(hasValue() or (children().count() > id.count()))", &ok, &["true"]);
    let txt = "text.`div`.exists()";
    check(txt, &json!({"resourceType": "Patient", "text": {"div": "<div/>"}}), &["true"]);
}

#[test]
fn depth_bounds_hold_for_chains_and_evaluation() {
    let r = json!({"resourceType": "Basic"});
    let long_sum = vec!["1"; 100_000].join(" + ");
    assert!(matches!(parse(&long_sum), Err(FhirPathError::Parse { .. })));
    let long_path = format!("Basic{}", ".id".repeat(100_000));
    assert!(matches!(parse(&long_path), Err(FhirPathError::Parse { .. })));
    // The deepest accepted expression of each shape evaluates without
    // exhausting a (2 MiB, debug build) test-thread stack.
    let shapes: [(&str, &str, &str); 6] = [
        ("(1).where(", "true", ")"),
        ("(1 + (", "1", "))"),
        ("-", "1", ""),
        ("iif(true, ", "1", ", 0)"),
        ("(1).select(", "$this", ")"),
        ("Basic.extension.where(", "true", ").exists()"),
    ];
    for (open, mid, close) in shapes {
        let build = |n: usize| format!("{}{mid}{}", open.repeat(n), close.repeat(n));
        let deepest = (1..200).take_while(|n| parse(&build(*n)).is_ok()).last().unwrap_or(0);
        assert!(deepest > 30, "{open}: only {deepest} levels");
        assert!(parse(&build(deepest + 1)).is_err());
        let expr = parse(&build(deepest)).unwrap();
        assert!(evaluate(&expr, &r).is_ok(), "{open} x{deepest}");
    }
}

#[test]
fn regex_bounds() {
    let r = json!({"resourceType": "Basic"});
    let long = "a".repeat(4000);
    assert_eq!(texts(&run(&format!("'{long}'.matches('^a*$')"), &r)), ["true"]);
    assert_eq!(texts(&run(&format!("'{long}b'.matches('^[a]+b$')"), &r)), ["true"]);
    let deep = parse(&format!("'{long}'.matches('^(a)*$')")).unwrap();
    assert!(evaluate(&deep, &r).is_err());
    let evil = parse(&format!("'{}'.matches('^(a|a)*b$')", "a".repeat(40))).unwrap();
    assert!(evaluate(&evil, &r).is_err());
    let cases = [
        ("'Abc_9'.matches('[A-Z]([A-Za-z0-9_]){0,254}')", "true"),
        ("'abc'.matches('^b')", "false"),
        ("'a.b'.replaceMatches('\\\\..*', '')", "a"),
        ("'2024-01-02'.matches('^\\\\d{4}-\\\\d{2}-\\\\d{2}$')", "true"),
        ("'x y'.matches('\\\\S\\\\s\\\\S')", "true"),
        ("'abc'.replaceMatches('b?', '-')", "-a--c-"),
    ];
    for (expr, want) in cases {
        assert_eq!(texts(&run(expr, &r)), [want], "{expr}");
    }
}

#[test]
fn set_functions() {
    let r = json!({"resourceType": "Basic"});
    let cases = [
        ("(1 | 2).subsetOf(1 | 2 | 3)", "true"),
        ("(1 | 2 | 3).supersetOf(4)", "false"),
        ("(1 | 2 | 3).intersect(2 | 3 | 4)", "2,3"),
        ("(1 | 2 | 3).exclude(2)", "1,3"),
        ("(1 | 2).union(2 | 3)", "1,2,3"),
        ("(1 | 2).combine(2 | 3)", "1,2,2,3"),
        ("(1 | 2 | 3).skip(1).take(1)", "2"),
        ("(1 | 1).isDistinct()", "true"),
        ("(1).combine(1).isDistinct()", "false"),
    ];
    for (expr, want) in cases {
        assert_eq!(texts(&run(expr, &r)).join(","), want, "{expr}");
    }
}

#[test]
fn content_references_keep_model_context() {
    let q = json!({"resourceType": "Questionnaire", "item": [{"linkId": "1", "type": "group",
        "item": [{"linkId": "1.1", "type": "boolean", "enableWhen": [{"question": "x", "operator": "exists", "answerBoolean": true}]}]}]});
    check("Questionnaire.item.item.linkId", &q, &["1.1"]);
    assert_eq!(types_of(&run("Questionnaire.item.item", &q)), ["BackboneElement"]);
    assert_eq!(types_of(&run("Questionnaire.item.item.enableWhen.answer", &q)), ["boolean"]);
    check("Questionnaire.descendants().where($this is BackboneElement).linkId", &q, &["1", "1.1"]);
    check("Questionnaire.item.iif(type = 'group', linkId, 'no')", &q, &["1"]);
}
