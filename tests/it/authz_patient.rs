//! Confined grants: `patient/` scopes reach only the token patient's compartment, and SMART v2
//! query restrictions only the resources that match them. Every case checks the status and that
//! nothing of the other patient (whose resources all carry the marker "Zed") appears in the body.

use reqwest::Method;
use serde_json::{Value, json};

use crate::authz::{send, start, token};
use crate::support::{Backend, Srv};

/// Marks every resource of patient p2: it must never show in an answer to p1's tokens.
const ZED: &str = "Zed";

/// Types in the Patient compartment, with the element that puts them there.
/// (type, the element that puts it there, the prefix of its ids)
const TYPES: &[(&str, &str, &str)] = &[
    ("Observation", "subject", "obs"),
    ("Immunization", "patient", "imm"),
    ("CareTeam", "subject", "ct"),
    ("CarePlan", "subject", "cp"),
    ("Encounter", "subject", "enc"),
    // Not in R4's Patient compartment; Hearth ties it to its patient for authorization.
    ("Task", "for", "task"),
];

/// A valid resource of `rtype` in `patient`'s compartment.
fn resource(rtype: &str, id: Option<&str>, patient: &str) -> Value {
    let link = TYPES.iter().find(|(t, ..)| *t == rtype).map(|(_, l, _)| *l).unwrap_or("subject");
    let mut r = match rtype {
        "Observation" => json!({"status": "final", "code": {"text": "x"}}),
        "Immunization" => {
            json!({"status": "completed", "vaccineCode": {"text": "x"}, "occurrenceDateTime": "2020-01-01"})
        }
        "CareTeam" => json!({"status": "active"}),
        "Task" => json!({"status": "ready", "intent": "order"}),
        "CarePlan" => json!({"status": "active", "intent": "plan"}),
        _ => {
            json!({"status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})
        }
    };
    r["resourceType"] = json!(rtype);
    r[link] = json!({"reference": format!("Patient/{patient}")});
    if let Some(id) = id {
        r["id"] = json!(id);
    }
    if patient == "p2" {
        r["text"] = json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{ZED}</div>")});
    }
    r
}

fn lab(id: &str, patient: &str, category: &str) -> Value {
    let mut o = resource("Observation", Some(id), patient);
    o["category"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]);
    o
}

/// p1's data from `authz::start` plus p2 and a resource of each type for both.
async fn seed(srv: &Srv) {
    let admin = token(srv, "user/*.cruds", None);
    let mut all = vec![
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": ZED}]}),
        lab("o2", "p2", "laboratory"),
        lab("lab1", "p1", "laboratory"),
        lab("vit1", "p1", "vital-signs"),
    ];
    for (t, _, short) in TYPES {
        all.push(resource(t, Some(&format!("{short}1")), "p1"));
        all.push(resource(t, Some(&format!("{short}2")), "p2"));
    }
    for r in all {
        let path = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        let (status, text) = send(srv, Some(&admin), Method::PUT, &path, Some(r)).await;
        assert!(status == 201 || status == 200, "{path}: {text}");
    }
}

/// (scopes, method, path, body, expected status, text the answer must contain)
type Case = (String, Method, String, Option<Value>, u16, Option<String>);

fn case(scopes: &str, m: Method, path: &str, body: Option<Value>, status: u16, shows: Option<&str>) -> Case {
    (scopes.into(), m, path.into(), body, status, shows.map(str::to_string))
}

/// The same questions for every compartment type.
fn per_type() -> Vec<Case> {
    use Method as M;
    let mut v = Vec::new();
    for (t, _, short) in TYPES {
        let (own, other) = (format!("{t}/{short}1"), format!("{t}/{short}2"));
        let all = "patient/*.cruds";
        let rs = format!("patient/{t}.rs");
        v.extend([
            case(all, M::GET, &own, None, 200, Some(&format!("{short}1"))),
            case(all, M::GET, &other, None, 404, None),
            case(all, M::GET, t, None, 200, Some(&format!("{short}1"))),
            case(all, M::GET, &format!("{t}?_id={short}2"), None, 200, None),
            case(all, M::GET, &format!("{other}/_history"), None, 404, None),
            case(all, M::GET, &format!("{other}/_history/1"), None, 404, None),
            case(all, M::GET, &format!("{t}/_history"), None, 403, None),
            case(all, M::POST, t, Some(resource(t, None, "p1")), 201, None),
            case(all, M::POST, t, Some(resource(t, None, "p2")), 403, None),
            case(all, M::PUT, &other, Some(resource(t, Some(&format!("{short}2")), "p1")), 404, None),
            case(all, M::PUT, &own, Some(resource(t, Some(&format!("{short}1")), "p2")), 403, None),
            case(
                all,
                M::PUT,
                &format!("{t}/{short}new"),
                Some(resource(t, Some(&format!("{short}new")), "p1")),
                201,
                None,
            ),
            case(all, M::DELETE, &other, None, 404, None),
            case(all, M::PUT, &format!("{t}?_id={short}1"), Some(resource(t, None, "p1")), 403, None),
            // Compartment searches follow R4's definition, which has no Task.
            case(all, M::GET, &format!("Patient/p2/{t}"), None, if *t == "Task" { 400 } else { 200 }, None),
            case(&rs, M::GET, &own, None, 200, Some(&format!("{short}1"))),
            case(&rs, M::GET, &format!("{t}?_count=50"), None, 200, Some(&format!("{short}1"))),
            case(&rs, M::POST, t, Some(resource(t, None, "p1")), 403, None),
            case(
                &rs,
                M::GET,
                &format!("Patient/p1/{t}"),
                None,
                if *t == "Task" { 400 } else { 200 },
                (*t != "Task").then_some(&format!("{short}1")).map(String::as_str),
            ),
        ]);
    }
    v
}

fn patient_cases() -> Vec<Case> {
    use Method as M;
    let all = "patient/*.cruds";
    let lab = "patient/Observation.rs?category=laboratory";
    let labw = "patient/Observation.crus?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let new_lab = |p: &str, c: &str| {
        let mut o = self::lab("x", p, c);
        o.as_object_mut().map(|m| m.remove("id"));
        Some(o)
    };
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/o2"}}]});
    let mut v = vec![
        case(all, M::GET, "Patient/p1", None, 200, Some("Ward")),
        case(all, M::GET, "Patient/p2", None, 404, None),
        case(all, M::GET, "Patient", None, 200, Some("Ward")),
        case(all, M::GET, "Patient?name=Ze", None, 200, None),
        case(all, M::GET, "Patient/p2/$everything", None, 404, None),
        case(all, M::GET, "Patient/p1/$everything", None, 200, Some("Ward")),
        case(all, M::GET, "Patient/p1/*", None, 200, Some("o1")),
        case(all, M::GET, "?_type=Observation,Patient", None, 200, Some("Ward")),
        case(all, M::GET, "", None, 200, Some("Ward")),
        case(all, M::GET, "_history", None, 403, None),
        case(all, M::GET, "Observation?_include=Observation:subject", None, 200, Some("Ward")),
        case(all, M::GET, "Observation?_include=Observation:performer", None, 200, Some("o1")),
        case(all, M::GET, "Patient?_revinclude=Observation:subject", None, 200, Some("o1")),
        case(all, M::GET, "Patient?_revinclude:iterate=Observation:subject&_id=p2", None, 200, None),
        case(all, M::GET, "Practitioner/pr1", None, 404, None),
        case(all, M::GET, "Task/t1", None, 200, Some("t1")),
        case(all, M::GET, "Observation?subject:Patient.name=Ze", None, 403, None),
        case(all, M::GET, "Patient?_has:Observation:subject:status=final", None, 403, None),
        case(all, M::POST, "", Some(bundle), 200, None),
        case(
            all,
            M::PATCH,
            "Observation/o1",
            Some(json!([{"op": "replace", "path": "/status", "value": "amended"}])),
            200,
            None,
        ),
        case(
            all,
            M::PATCH,
            "Observation/o1",
            Some(json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}])),
            403,
            None,
        ),
        case(
            all,
            M::PATCH,
            "Observation/o2",
            Some(json!([{"op": "replace", "path": "/status", "value": "amended"}])),
            404,
            None,
        ),
        case(all, M::GET, "Patient/p1/_history", None, 200, Some("Ward")),
        case(all, M::PUT, "Patient/p2", Some(json!({"resourceType": "Patient", "id": "p2"})), 404, None),
        case(all, M::POST, "Patient", Some(json!({"resourceType": "Patient"})), 403, None),
        case(all, M::GET, "$export", None, 403, None),
        case(lab, M::GET, "Observation/lab1", None, 200, Some("lab1")),
        case(lab, M::GET, "Observation/vit1", None, 404, None),
        case(lab, M::GET, "Observation/o2", None, 404, None),
        case(lab, M::GET, "Observation", None, 200, Some("lab1")),
        case(lab, M::GET, "Observation?category=vital-signs", None, 200, None),
        case(lab, M::GET, "Patient/p1", None, 403, None),
        case(
            &format!("{lab} patient/Observation.rs?category=vital-signs"),
            M::GET,
            "Observation/vit1",
            None,
            200,
            Some("vit1"),
        ),
        case(
            &format!("{lab} patient/Observation.rs?category=vital-signs"),
            M::GET,
            "Observation?_count=50",
            None,
            200,
            Some("vit1"),
        ),
        case(labw, M::POST, "Observation", new_lab("p1", "laboratory"), 201, None),
        case(labw, M::POST, "Observation", new_lab("p1", "vital-signs"), 403, None),
        case(labw, M::POST, "Observation", new_lab("p2", "laboratory"), 403, None),
        case(labw, M::PUT, "Observation/vit1", Some(self::lab("vit1", "p1", "laboratory")), 404, None),
        case(
            "patient/Observation.crs?code:text=x",
            M::POST,
            "Observation",
            new_lab("p1", "laboratory"),
            403,
            None,
        ),
        case("patient/Observation.rs?nonsense=1", M::GET, "Observation", None, 403, None),
        case("user/Observation.rs?category=laboratory", M::GET, "Observation/o2", None, 200, None),
        case("user/Observation.rs?category=laboratory", M::GET, "Observation/vit1", None, 404, None),
        case(
            "user/Observation.rs?category=laboratory user/Observation.rs",
            M::GET,
            "Observation/vit1",
            None,
            200,
            Some("vit1"),
        ),
        case("patient/Observation.rs user/Observation.rs", M::GET, "Observation/o2", None, 200, None),
    ];
    v.extend(per_type());
    v
}

async fn matrix(backend: Backend) {
    let srv = start(backend).await;
    seed(&srv).await;
    let mut checked = 0;
    for (scopes, method, path, body, expected, shows) in patient_cases() {
        let t = token(&srv, &scopes, Some("p1"));
        let (status, text) = send(&srv, Some(&t), method.clone(), &path, body).await;
        let what = format!("{backend:?} [{scopes}] {method} {path}");
        assert_eq!(status, expected, "{what}: {text}");
        // The cases with user/ scopes may see p2's data; no patient/ grant may.
        if !scopes.contains("user/") {
            assert!(!text.contains(ZED), "{what} leaked p2's data: {text}");
        }
        if let Some(s) = shows {
            assert!(text.contains(&s), "{what} should show {s}: {text}");
        }
        if status == 403 {
            let oo: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(oo["issue"][0]["code"], "forbidden", "{text}");
        }
        checked += 1;
    }
    assert!(checked >= 130, "{checked}");
    // A batch entry outside reach is refused as an entry, not run.
    let t = token(&srv, "patient/*.cruds", Some("p1"));
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/o2"}}]});
    let (_, text) = send(&srv, Some(&t), Method::POST, "", Some(bundle)).await;
    let b: Value = serde_json::from_str(&text).unwrap();
    assert!(b["entry"][0]["response"]["status"].as_str().unwrap().starts_with("403"), "{text}");
    past_versions_and_criteria(&srv).await;
    // A token without a patient reaches nothing through patient/ scopes.
    let t = token(&srv, "patient/*.rs", None);
    let (status, text) = send(&srv, Some(&t), Method::GET, "Observation", None).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], 0, "{text}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_compartment_matrix_sqlite() {
    matrix(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_compartment_matrix_postgres() {
    if crate::support::postgres_available() {
        matrix(Backend::Postgres).await;
    }
}

/// What a resource was before, and criteria hidden in odd places.
async fn past_versions_and_criteria(srv: &Srv) {
    let admin = token(srv, "user/*.cruds", None);
    let t = token(srv, "patient/*.cruds", Some("p1"));
    // A deleted resource of p2 is not brought back into p1's record (with its history).
    assert_eq!(send(srv, Some(&admin), Method::DELETE, "Observation/o2", None).await.0, 200);
    let (status, text) =
        send(srv, Some(&t), Method::PUT, "Observation/o2", Some(lab("o2", "p1", "laboratory"))).await;
    assert_eq!(status, 404, "{text}");
    // A resource moved from p2 to p1: p1 sees the versions that were theirs only.
    let moved = resource("Observation", Some("mv"), "p2");
    assert_eq!(send(srv, Some(&admin), Method::PUT, "Observation/mv", Some(moved)).await.0, 201);
    let now = resource("Observation", Some("mv"), "p1");
    assert_eq!(send(srv, Some(&admin), Method::PUT, "Observation/mv", Some(now)).await.0, 200);
    let (status, text) = send(srv, Some(&t), Method::GET, "Observation/mv/_history", None).await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(ZED), "{text}");
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["entry"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(send(srv, Some(&t), Method::GET, "Observation/mv/_history/1", None).await.0, 404);
    assert_eq!(send(srv, Some(&t), Method::GET, "Observation/mv/_history/2", None).await.0, 200);
    // Criteria are checked however they are spelled or wherever they hide.
    for path in
        ["Patient?%20_has:Observation:subject:status=final", "Patient?_has:AuditEvent:patient:outcome=0"]
    {
        let (status, text) = send(srv, Some(&t), Method::GET, path, None).await;
        assert_eq!(status, 403, "{path}: {text}");
    }
    let lab_only = token(srv, "user/Observation.cruds", None);
    let conditional_ref = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "request": {"method": "POST", "url": "Observation"},
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": "Patient?name=Ward"}}}]});
    let (status, text) = send(srv, Some(&lab_only), Method::POST, "", Some(conditional_ref)).await;
    assert_eq!(status, 403, "a conditional reference searches Patients: {text}");
    let (status, _) = send(
        srv,
        Some(&lab_only),
        Method::PUT,
        "Observation?subject:Patient.name=Ward",
        Some(resource("Observation", None, "p1")),
    )
    .await;
    assert_eq!(status, 403, "a condition with a chain into Patient");
    // A write may not tie a resource to another patient besides one's own.
    let both = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/p2"}, "performer": [{"reference": "Patient/p1"}]});
    assert_eq!(send(srv, Some(&t), Method::POST, "Observation", Some(both)).await.0, 403);
}
