//! Authorization (`auth = "smart"`): each handler asks the caller's grant (see `authn.rs` for
//! how the caller is known) before it calls the engine.
//!
//! Two questions, in this order: `allow` — may the caller do this interaction on this type at
//! all (else 403); and `reach` — how much of the type (all, or only what lies inside a patient's
//! compartment, a care team's patients or a v2 query). Searches hand the reach to the engine as
//! a [`See`]; reads and writes of one resource check it and answer 404 for what lies outside,
//! so a confined token cannot learn that a resource exists. What cannot be confined
//! (conditional writes, history across resources, Bundle entries, chains into confined types)
//! needs a grant that reaches the whole type (`unconfined`).

use std::sync::Arc;

pub use super::authn::Principal;
use crate::auth::{Context, Interaction, Reach};
use crate::engine::See;
use crate::error::{Error, Result};

fn name(i: Interaction) -> &'static str {
    match i {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
    }
}

/// Whether `principal` (none: authorization is off) may do `interaction` on `rtype` at all.
/// Confined grants pass here and are narrowed by [`reach`] where the data is touched.
pub fn allow(principal: Option<&Principal>, rtype: &str, interaction: Interaction) -> Result<()> {
    let Some(p) = principal else { return Ok(()) };
    if rtype == "AuditEvent" {
        audit_log(p, interaction)?;
    }
    if p.grant.rules_for(rtype, interaction).next().is_none() {
        return Err(Error::Forbidden(format!(
            "the access token's scopes do not allow {} on {rtype}",
            name(interaction)
        )));
    }
    Ok(())
}

/// The audit log is the server's record: nobody writes it through the API, and only admins
/// (and backend services with a `system/` scope for it) read it.
fn audit_log(p: &Principal, interaction: Interaction) -> Result<()> {
    if matches!(interaction, Interaction::Create | Interaction::Update | Interaction::Delete) {
        return Err(Error::Forbidden("AuditEvents are written by the server only".into()));
    }
    if reads_audit_log(p) {
        Ok(())
    } else {
        Err(Error::Forbidden("AuditEvents are readable by admins only".into()))
    }
}

fn reads_audit_log(p: &Principal) -> bool {
    p.is_admin() || p.grant.rules_for("AuditEvent", Interaction::Read).any(|r| r.context == Context::System)
}

/// How far `interaction` on `rtype` reaches for `principal` (all of it without authorization).
pub fn reach(principal: Option<&Principal>, rtype: &str, interaction: Interaction) -> Reach {
    match principal {
        None => Reach::All,
        Some(p) if rtype == "AuditEvent" && audit_log(p, interaction).is_err() => Reach::Nothing,
        Some(p) => p.grant.reach(rtype, interaction, p.panel.as_deref()),
    }
}

/// The confinements of `principal` for the engine's searches; `None` when nothing is confined.
pub fn see(principal: Option<&Arc<Principal>>) -> Option<Arc<See>> {
    let p = principal?.clone();
    let confined = p.grant.rules.iter().any(|r| r.context == Context::Patient || r.query.is_some());
    if !confined && p.panel.is_none() && reads_audit_log(&p) {
        return None;
    }
    Some(Arc::new(move |rtype: &str, i: Interaction| reach(Some(&p), rtype, i)))
}

/// Interactions that cannot be confined (conditional writes, history across resources, Bundle
/// entries) need a grant that reaches the whole type.
pub fn unconfined(
    principal: Option<&Principal>,
    rtype: &str,
    interaction: Interaction,
    what: &str,
) -> Result<()> {
    allow(principal, rtype, interaction)?;
    if reach(principal, rtype, interaction).is_all() {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "{what} on {rtype} is not available to a token confined to a patient, a care team or a \
         query ({} on {rtype} is granted only with such limits)",
        name(interaction)
    )))
}

/// `allow` for several types; `None` means every type, which needs a `*` scope.
pub fn allow_types(
    principal: Option<&Principal>,
    types: Option<&[String]>,
    interaction: Interaction,
) -> Result<()> {
    match types {
        Some(types) => types.iter().try_for_each(|t| allow(principal, t, interaction)),
        None => {
            let Some(p) = principal else { return Ok(()) };
            if p.grant.rules.iter().any(|r| r.rtype.is_none() && r.perms.has(interaction)) {
                Ok(())
            } else {
                Err(Error::Forbidden(format!(
                    "{} across every resource type needs a */ scope (e.g. patient/*.{} or user/*.{}); name the types with _type",
                    name(interaction),
                    if interaction == Interaction::Search { "s" } else { "r" },
                    if interaction == Interaction::Search { "s" } else { "r" },
                )))
            }
        }
    }
}

/// `allow_types`, but every type must be reached whole.
pub fn unconfined_types(
    principal: Option<&Principal>,
    types: Option<&[String]>,
    interaction: Interaction,
    what: &str,
) -> Result<()> {
    allow_types(principal, types, interaction)?;
    let Some(p) = principal else { return Ok(()) };
    let whole = match types {
        Some(types) => types.iter().all(|t| reach(principal, t, interaction).is_all()),
        None => {
            p.panel.is_none()
                && p.grant.rules.iter().any(|r| {
                    r.rtype.is_none()
                        && r.perms.has(interaction)
                        && r.context != Context::Patient
                        && r.query.is_none()
                })
        }
    };
    if whole {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "{what} is not available to a token confined to a patient, a care team or a query"
        )))
    }
}

/// Bulk operations are for backend services: a `system/` scope on every type.
pub fn allow_system(principal: Option<&Principal>, interactions: &[Interaction]) -> Result<()> {
    let Some(p) = principal else { return Ok(()) };
    let ok = interactions.iter().all(|i| {
        p.grant.rules.iter().any(|r| {
            r.context == Context::System && r.rtype.is_none() && r.query.is_none() && r.perms.has(*i)
        })
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Forbidden("bulk data operations need system/*.* scopes (a backend service token)".into()))
    }
}

/// What a Bundle entry's request needs: its interaction on its type, plus search when it is
/// conditional.
pub fn allow_entry(principal: Option<&Principal>, r: &crate::engine::Request) -> Result<()> {
    use crate::engine::Method;
    let (path, query) = match r.url.split_once('?') {
        Some((p, _)) => (p, true),
        None => (r.url.as_str(), false),
    };
    let mut parts = path.trim_start_matches('/').split('/');
    let rtype = parts.next().unwrap_or_default();
    let has_id = parts.next().is_some();
    let main = match r.method {
        Method::Post => Interaction::Create,
        Method::Put => Interaction::Update,
        Method::Delete => Interaction::Delete,
        Method::Get if has_id => Interaction::Read,
        Method::Get => Interaction::Search,
    };
    // Entries run inside the engine's transaction, where confinement is not applied.
    unconfined(principal, rtype, main, "a batch or transaction entry")?;
    if (query || r.if_none_exist.is_some()) && main != Interaction::Search {
        unconfined(principal, rtype, Interaction::Search, "a batch or transaction entry")?;
    }
    if let Some((_, q)) = r.url.split_once('?') {
        allow_query(principal, q)?;
    }
    if let Some(q) = &r.if_none_exist {
        allow_query(principal, q.trim_start_matches('?'))?;
    }
    if let Some(resource) = &r.resource {
        allow_conditional_references(principal, resource)?;
    }
    Ok(())
}

/// A transaction may reference `Type?criteria` (conditional references, resolved by a search):
/// that search must be allowed like any other.
fn allow_conditional_references(principal: Option<&Principal>, v: &serde_json::Value) -> Result<()> {
    if principal.is_none() {
        return Ok(());
    }
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(r)) = map.get("reference")
                && let Some((rtype, q)) = r.split_once('?')
            {
                unconfined(principal, rtype, Interaction::Search, "a conditional reference")?;
                allow_query(principal, q)?;
            }
            map.values().try_for_each(|x| allow_conditional_references(principal, x))
        }
        serde_json::Value::Array(items) => {
            items.iter().try_for_each(|x| allow_conditional_references(principal, x))
        }
        _ => Ok(()),
    }
}

/// Drops included resources the caller may not read (a search result's `_include`s).
pub fn visible_includes(principal: Option<&Principal>, result: &mut crate::engine::SearchResult) {
    if principal.is_some() {
        result.included.retain(|v| allow(principal, &v.rtype, Interaction::Read).is_ok());
    }
}

/// Criteria that look into other types need search on them too: `_has:Type:…` and chains
/// (`subject:Patient.name`). A chain link without a `:Type` could reach any type, so it needs
/// a `*` scope. Without this, a filter would reveal what the grant may not read.
pub fn allow_query(principal: Option<&Principal>, query: &str) -> Result<()> {
    if principal.is_none() {
        return Ok(());
    }
    for (key, _) in url::form_urlencoded::parse(query.as_bytes()) {
        // Trimmed as the search parser trims names, so ` _has:…` is checked like `_has:…`.
        let key = key.trim();
        if let Some(rest) = key.strip_prefix("_has:") {
            let rtype = rest.split(':').next().unwrap_or_default();
            unconfined(principal, rtype, Interaction::Search, "_has")?;
            // Nested _has and chains inside it: the conservative answer.
            if rest.contains("_has:") || rest.split(':').nth(2).is_some_and(|p| p.contains('.')) {
                unconfined_types(principal, None, Interaction::Search, "a nested _has")?;
            }
            continue;
        }
        if key.starts_with('_') || !key.contains('.') {
            continue;
        }
        let links: Vec<&str> = key.split('.').collect();
        for link in &links[..links.len() - 1] {
            match link.split_once(':') {
                Some((_, t)) if crate::resource::is_resource_type(t) => {
                    unconfined(principal, t, Interaction::Search, "a chained search")?
                }
                _ => unconfined_types(principal, None, Interaction::Search, "an untyped chain")?,
            }
        }
    }
    Ok(())
}
