//! Authorization (`auth = "smart"`): each handler asks the caller's grant (see `authn.rs` for
//! how the caller is known) before it calls the engine.
//!
//! Being built (issue 6): `user/` and `system/` scopes are enforced per resource type and
//! interaction. `patient/` scopes and v2 query restrictions are refused with 403 until their
//! confinement (compartment, query) is enforced: a scope that cannot be enforced is never
//! treated as granted.

pub use super::authn::Principal;
use crate::auth::{Context, Interaction};
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

/// Whether `principal` (none: authorization is off) may do `interaction` on `rtype`.
pub fn allow(principal: Option<&Principal>, rtype: &str, interaction: Interaction) -> Result<()> {
    let Some(p) = principal else { return Ok(()) };
    let rules: Vec<_> = p.grant.rules_for(rtype, interaction).collect();
    if rules.is_empty() {
        return Err(Error::Forbidden(format!(
            "the access token's scopes do not allow {} on {rtype}",
            name(interaction)
        )));
    }
    if rules.iter().any(|r| r.context != Context::Patient && r.query.is_none()) {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "{} on {rtype} is granted only by patient/ or query-restricted scopes, which this server \
         does not enforce yet; use user/ or system/ scopes",
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
            let wildcard = p.grant.rules.iter().any(|r| {
                r.rtype.is_none()
                    && r.perms.has(interaction)
                    && r.context != Context::Patient
                    && r.query.is_none()
            });
            if wildcard {
                Ok(())
            } else {
                Err(Error::Forbidden(format!(
                    "{} across every resource type needs a */ scope (user/*.{} or system/*.{}); name the types with _type",
                    name(interaction),
                    if interaction == Interaction::Search { "s" } else { "r" },
                    if interaction == Interaction::Search { "s" } else { "r" },
                )))
            }
        }
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
    allow(principal, rtype, main)?;
    if (query || r.if_none_exist.is_some()) && main != Interaction::Search {
        allow(principal, rtype, Interaction::Search)?;
    }
    Ok(())
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
        if let Some(rest) = key.strip_prefix("_has:") {
            let rtype = rest.split(':').next().unwrap_or_default();
            allow(principal, rtype, Interaction::Search)?;
            // Nested _has and chains inside it: the conservative answer.
            if rest.contains("_has:") || rest.split(':').nth(2).is_some_and(|p| p.contains('.')) {
                allow_types(principal, None, Interaction::Search)?;
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
                    allow(principal, t, Interaction::Search)?
                }
                _ => allow_types(principal, None, Interaction::Search)?,
            }
        }
    }
    Ok(())
}
