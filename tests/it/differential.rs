//! The same data and the same generated queries give the same ids in the same order on SQLite
//! and on PostgreSQL.

use serde_json::{Value, json};

use crate::support::{Backend, Srv, json, postgres_available};

const FAMILIES: &[&str] = &["Müller", "Muller", "Smith", "Smythe", "Øster", "Garcia", "García", "O'Brien"];
const GIVEN: &[&str] = &["Anna", "Åsa", "Peter", "Pat", "Jo", "José", "Zoë"];
const CITIES: &[&str] = &["Springfield", "Reykjavík", "Zürich", "Boston"];

/// A small deterministic generator, so both servers see the same data and queries.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn patients() -> Vec<Value> {
    let mut r = Lcg(7);
    (0..60)
        .map(|i| {
            let mut p = json!({
                "resourceType": "Patient",
                "id": format!("p{i:02}"),
                "identifier": [{"system": format!("urn:sys:{}", r.next(3)), "value": format!("v{}", r.next(10))}],
                "name": [{"family": FAMILIES[r.next(FAMILIES.len())], "given": [GIVEN[r.next(GIVEN.len())]]}],
                "address": [{"city": CITIES[r.next(CITIES.len())]}],
                "active": r.next(2) == 0,
            });
            if r.next(5) > 0 {
                p["birthDate"] = json!(format!("{}-{:02}-{:02}", 1950 + r.next(60), 1 + r.next(12), 1 + r.next(28)));
            }
            if r.next(4) > 0 {
                p["gender"] = json!(["male", "female", "other"][r.next(3)]);
            }
            p
        })
        .collect()
}

fn queries() -> Vec<String> {
    let mut r = Lcg(11);
    let prefixes = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"];
    let mut out = Vec::new();
    for _ in 0..300 {
        let q = match r.next(8) {
            0 => format!(
                "family={}",
                FAMILIES[r.next(FAMILIES.len())].to_lowercase().chars().take(2).collect::<String>()
            ),
            1 => format!("name:contains={}", ["a", "er", "ü", "th"][r.next(4)]),
            2 => format!("birthdate={}{}", prefixes[r.next(prefixes.len())], 1950 + r.next(60)),
            3 => format!("gender={}", ["male", "female", "other", "male,female"][r.next(4)]),
            4 => format!("identifier=urn:sys:{}|v{}", r.next(3), r.next(10)),
            5 => format!("gender:not=male&active={}", r.next(2) == 0),
            6 => format!(
                "address-city={}&birthdate:missing={}",
                ["spr", "rey", "zur", "bos"][r.next(4)],
                r.next(2) == 0
            ),
            _ => format!("given:exact={}", GIVEN[r.next(GIVEN.len())]),
        };
        // Half the queries also sort, so the two backends must agree on order, not just sets.
        let sorts =
            ["family", "-birthdate", "given,-_id", "birthdate,family", "-family,birthdate", "-address-city"];
        let sort =
            if r.next(2) == 0 { format!("&_sort={}", sorts[r.next(sorts.len())]) } else { String::new() };
        out.push(format!("Patient?{q}{sort}&_count=100"));
    }
    out
}

async fn answers(srv: &Srv, queries: &[String]) -> Vec<Vec<String>> {
    for p in patients() {
        let resp = srv.put(&format!("Patient/{}", p["id"].as_str().unwrap()), &p).await;
        assert_eq!(resp.status(), 201);
    }
    let mut out = Vec::new();
    for q in queries {
        let bundle = json(srv.get(q).await).await;
        assert_eq!(bundle["type"], "searchset", "{q}: {bundle}");
        let ids: Vec<String> = bundle["entry"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["resource"]["id"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        assert_eq!(bundle["total"], ids.len(), "{q}");
        out.push(ids);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_agree() {
    if !postgres_available() {
        return;
    }
    let queries = queries();
    let sqlite = Srv::start(Backend::Sqlite).await;
    let a = answers(&sqlite, &queries).await;
    sqlite.stop().await;
    let pg = Srv::start(Backend::Postgres).await;
    let b = answers(&pg, &queries).await;
    pg.stop().await;
    let mut non_empty = 0;
    for ((q, x), y) in queries.iter().zip(&a).zip(&b) {
        assert_eq!(x, y, "{q}");
        non_empty += usize::from(!x.is_empty());
    }
    // The generated queries must exercise the data, not agree on emptiness.
    assert!(non_empty > 150, "only {non_empty} of {} queries matched anything", queries.len());
}
