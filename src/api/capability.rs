//! `GET /metadata`: the CapabilityStatement, generated from what this build implements —
//! the resource types the validator knows, the search parameters the index writes, the formats
//! the negotiator accepts.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::request::Ctx;
use super::{AppState, format, respond};
use crate::resource::{instant, resource_types};
use crate::search::Registry;

/// The type-level interactions the router serves for every resource type.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

pub async fn metadata(State(s): State<Arc<AppState>>, ctx: Ctx) -> Response {
    ctx.run(async {
        let mut statement = capability_statement(&ctx.base, &s.engine.registry);
        if s.keys.is_some() && s.external.is_none() {
            statement["rest"][0]["security"] = security(&ctx.base);
        }
        Ok(respond::value(StatusCode::OK, ctx.out, &statement))
    })
    .await
}

/// SMART on FHIR in the CapabilityStatement: older clients (Python fhirclient among them) find
/// the OAuth endpoints here rather than in `/.well-known/smart-configuration`.
fn security(base: &str) -> Value {
    const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
    let issuer = crate::auth::token::issuer_for(base);
    let uri = |name: &str, path: &str| json!({"url": name, "valueUri": format!("{issuer}/{path}")});
    json!({
        "cors": false,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }]}],
        "extension": [{
            "url": OAUTH_URIS,
            "extension": [
                uri("authorize", "authorize"),
                uri("token", "token"),
                uri("introspect", "introspect"),
                uri("revoke", "revoke"),
            ],
        }],
    })
}

pub fn capability_statement(base: &str, registry: &Registry) -> Value {
    let resources: Vec<Value> = resource_types()
        .iter()
        .map(|t| {
            let params: Vec<Value> = registry
                .for_type(t)
                .into_iter()
                .filter(|p| p.indexed())
                .map(|p| {
                    json!({"name": p.code, "definition": p.url, "type": p.kind.as_str(), "documentation": p.description})
                })
                .collect();
            let mut resource = json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchParam": params,
                "searchInclude": ["*"],
            });
            let mut operations = Vec::new();
            // The two compartments R4 defines $everything for (the others serve it too).
            if matches!(t.as_str(), "Patient" | "Encounter") {
                operations.push(json!({
                    "name": "everything",
                    "definition": format!("http://hl7.org/fhir/OperationDefinition/{t}-everything"),
                }));
            }
            match t.as_str() {
                "Patient" => operations.push(json!({"name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"})),
                "Group" => operations.push(json!({"name": "export",
                    "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"})),
                _ => {}
            }
            if !operations.is_empty() {
                resource["operation"] = json!(operations);
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant::format_ms(instant::now_ms()),
        "publisher": "Hearth",
        "kind": "instance",
        "software": {"name": "Hearth", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Hearth FHIR R4 server", "url": base},
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "fhirVersion": "4.0.1",
        "format": format::FORMATS,
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "history-system"}, {"code": "search-system"}],
            "searchParam": [
                {"name": "_type", "type": "token", "documentation": "The resource types to search"},
                {"name": "_sort", "type": "string", "documentation": "Sort keys, comma-separated, - for descending"},
                {"name": "_count", "type": "number", "documentation": "Page size"},
            ],
            "compartment": crate::search::compartment::urls(),
            // $import has no published OperationDefinition to point at; README documents it.
            "operation": [
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
            ],
        }],
    })
}
