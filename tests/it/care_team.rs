//! The care-team policy (`access.care_team_only`): a coordinator's or provider's `user/` scopes
//! reach the patients whose `generalPractitioner` they are or whose active CareTeam they are on,
//! and those patients' data; an admin's reach all; other types (Practitioner) stay whole.

use reqwest::Method;
use serde_json::{Value, json};

use crate::authz::send;
use crate::support::{Backend, Srv};

/// Marks what the coordinator must not see.
const HIDDEN: &str = "Hidden";

async fn seed(srv: &Srv) {
    let t = mint(srv, "root", "user/*.cruds");
    let text = |s: &str| json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{s}</div>")});
    let rs = [
        json!({"resourceType": "Practitioner", "id": "pr1"}),
        json!({"resourceType": "Practitioner", "id": "pr2"}),
        json!({"resourceType": "Patient", "id": "gp", "generalPractitioner": [{"reference": "Practitioner/pr1"}]}),
        json!({"resourceType": "Patient", "id": "team"}),
        json!({"resourceType": "Patient", "id": "other", "text": text(HIDDEN), "generalPractitioner": [{"reference": "Practitioner/pr2"}]}),
        json!({"resourceType": "Patient", "id": "former", "text": text(HIDDEN)}),
        json!({"resourceType": "CareTeam", "id": "ct1", "status": "active", "subject": {"reference": "Patient/team"},
               "participant": [{"member": {"reference": "Practitioner/pr1"}}]}),
        json!({"resourceType": "CareTeam", "id": "ct2", "status": "inactive", "subject": {"reference": "Patient/former"},
               "text": text(HIDDEN), "participant": [{"member": {"reference": "Practitioner/pr1"}}]}),
        json!({"resourceType": "Observation", "id": "o-gp", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/gp"}}),
        json!({"resourceType": "Observation", "id": "o-team", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/team"}}),
        json!({"resourceType": "Observation", "id": "o-other", "status": "final", "code": {"text": "x"}, "text": text(HIDDEN), "subject": {"reference": "Patient/other"}}),
        json!({"resourceType": "Task", "id": "t-other", "status": "ready", "intent": "order", "text": text(HIDDEN), "for": {"reference": "Patient/other"}}),
        json!({"resourceType": "Task", "id": "t-gp", "status": "ready", "intent": "order", "for": {"reference": "Patient/gp"}}),
    ];
    for r in rs {
        let path = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        let (status, body) = send(srv, Some(&t), Method::PUT, &path, Some(r)).await;
        assert_eq!(status, 201, "{path}: {body}");
    }
    for (name, role, fhir_user) in [
        ("carol", "coordinator", Some("Practitioner/pr1")),
        ("pete", "provider", Some("Practitioner/pr1")),
        ("nobody", "coordinator", None),
        ("ada", "admin", Some("Practitioner/pr1")),
    ] {
        hearth::auth::accounts::add_user(
            &srv.state.engine.store,
            name,
            "a long enough password",
            fhir_user,
            role,
        )
        .await
        .unwrap();
    }
}

/// A token for `subject` (a user name) from the server's own keys.
fn mint(srv: &Srv, subject: &str, scopes: &str) -> String {
    crate::support::mint(srv, "app", subject, scopes, None, None)
}

async fn get(srv: &Srv, token: &str, path: &str) -> (u16, String) {
    send(srv, Some(token), Method::GET, path, None).await
}

fn ids(text: &str) -> Vec<String> {
    let b: Value = serde_json::from_str(text).unwrap();
    let mut ids: Vec<String> = b["entry"]
        .as_array()
        .map(|es| es.iter().map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn policy(backend: Backend) {
    let srv = Srv::start_with(backend, |c| c.auth = hearth::config::AuthMode::Smart).await;
    seed(&srv).await;
    for user in ["carol", "pete"] {
        let t = mint(&srv, user, "user/*.cruds");
        let (status, text) = get(&srv, &t, "Patient").await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(ids(&text), ["gp", "team"], "{user}: {text}");
        let (_, text) = get(&srv, &t, "Observation?_id=o-gp,o-team,o-other").await;
        assert_eq!(ids(&text), ["o-gp", "o-team"], "{text}");
        let (_, text) = get(&srv, &t, "Task").await;
        assert_eq!(ids(&text), ["t-gp"], "{text}");
        for path in ["Patient/other", "Observation/o-other", "Patient/former", "Task/t-other"] {
            let (status, text) = get(&srv, &t, path).await;
            assert_eq!(status, 404, "{user} {path}: {text}");
        }
        for path in [
            "Patient?_revinclude=Observation:subject",
            "Observation?_include=Observation:subject",
            "",
            "CareTeam",
        ] {
            let (status, text) = get(&srv, &t, path).await;
            assert_eq!(status, 200, "{path}: {text}");
            assert!(!text.contains(HIDDEN), "{user} {path} leaked: {text}");
        }
        // Practitioners are not patient data: the panel does not confine them.
        assert_eq!(get(&srv, &t, "Practitioner/pr2").await.0, 200);
        // Writes stay inside the panel.
        let obs = |p: &str| json!({"resourceType": "Observation", "status": "final", "code": {"text": "y"}, "subject": {"reference": format!("Patient/{p}")}});
        assert_eq!(send(&srv, Some(&t), Method::POST, "Observation", Some(obs("gp"))).await.0, 201);
        assert_eq!(send(&srv, Some(&t), Method::POST, "Observation", Some(obs("other"))).await.0, 403);
        // Nor can a CareTeam widen the panel: every patient it names must be in it already.
        let widen = json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/other"},
                           "participant": [{"member": {"reference": "Practitioner/pr1"}}, {"member": {"reference": "Patient/gp"}}]});
        assert_eq!(send(&srv, Some(&t), Method::POST, "CareTeam", Some(widen)).await.0, 403);
        // History across resources cannot be confined.
        assert_eq!(get(&srv, &t, "_history").await.0, 403);
    }
    // Joining a care team counts at once, for a token issued before.
    let carol = mint(&srv, "carol", "user/*.rs");
    assert_eq!(get(&srv, &carol, "Patient/other").await.0, 404);
    let root = mint(&srv, "root", "user/*.cruds");
    let ct = json!({"resourceType": "CareTeam", "id": "ct3", "status": "active", "subject": {"reference": "Patient/other"},
                    "participant": [{"member": {"reference": "Practitioner/pr1"}}]});
    assert_eq!(send(&srv, Some(&root), Method::PUT, "CareTeam/ct3", Some(ct)).await.0, 201);
    assert_eq!(get(&srv, &carol, "Patient/other").await.0, 200);
    // A coordinator without a Practitioner reaches no patient; an admin reaches every one.
    let (_, text) = get(&srv, &mint(&srv, "nobody", "user/*.rs"), "Patient").await;
    assert!(ids(&text).is_empty(), "{text}");
    let (_, text) = get(&srv, &mint(&srv, "ada", "user/*.rs"), "Patient").await;
    assert_eq!(ids(&text).len(), 4, "{text}");
    // A patient's user/ scopes reach their own record only (and every Practitioner).
    hearth::auth::accounts::add_user(
        &srv.state.engine.store,
        "pat",
        "a long enough password",
        Some("Patient/team"),
        "patient",
    )
    .await
    .unwrap();
    let pat = mint(&srv, "pat", "user/*.rs");
    let (_, text) = get(&srv, &pat, "Patient").await;
    assert_eq!(ids(&text), ["team"], "{text}");
    let (_, text) = get(&srv, &pat, "Observation?_id=o-gp,o-team,o-other").await;
    assert_eq!(ids(&text), ["o-team"], "{text}");
    assert_eq!(get(&srv, &pat, "Practitioner/pr1").await.0, 200);
    // Backend services (no user) are not confined by the policy.
    let (_, text) = get(&srv, &mint(&srv, "svc", "system/*.rs"), "Patient").await;
    assert_eq!(ids(&text).len(), 4, "{text}");
    srv.stop().await;

    // Switched off, a coordinator's scopes reach everything again.
    let srv = Srv::start_with(backend, |c| {
        c.auth = hearth::config::AuthMode::Smart;
        c.access.care_team_only = false;
    })
    .await;
    seed(&srv).await;
    let (_, text) = get(&srv, &mint(&srv, "carol", "user/*.rs"), "Patient").await;
    assert_eq!(ids(&text).len(), 4, "{text}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn care_team_policy_sqlite() {
    policy(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn care_team_policy_postgres() {
    if crate::support::postgres_available() {
        policy(Backend::Postgres).await;
    }
}
