//! The parameters every resource has (`_tag`, `_profile`, `_security`, `_source`) and `_total`.

use serde_json::json;

use crate::both;
use crate::search::{check, put};
use crate::support::json;

both!(meta_parameters_and_total, |srv| {
    put(
        srv,
        "Patient/m1",
        json!({"meta": {
            "tag": [{"system": "http://t", "code": "a"}], "profile": ["http://p/one"],
            "security": [{"system": "http://s", "code": "R"}], "source": "http://src#1"
        }}),
    )
    .await;
    put(
        srv,
        "Patient/m2",
        json!({"meta": {"tag": [{"system": "http://t", "code": "b"}], "profile": ["http://p/two"]}}),
    )
    .await;
    check(srv, "Patient?_tag=http://t|a", &["m1"]).await;
    check(srv, "Patient?_tag=b", &["m2"]).await;
    check(srv, "Patient?_tag:not=a", &["m2"]).await;
    check(srv, "Patient?_profile=http://p/one", &["m1"]).await;
    check(srv, "Patient?_profile:below=http://p", &["m1", "m2"]).await;
    check(srv, "Patient?_security=http://s|R", &["m1"]).await;
    check(srv, "Patient?_security:missing=true", &["m2"]).await;
    check(srv, "Patient?_source=http://src%231", &["m1"]).await;
    let none = json(srv.get("Patient?_total=none").await).await;
    assert!(none.get("total").is_none(), "{none}");
    for mode in ["estimate", "accurate"] {
        let b = json(srv.get(&format!("Patient?_total={mode}&_count=1")).await).await;
        assert_eq!(b["total"], 2, "{mode}: {b}");
    }
});
