//! Index rows extracted before the writer. Extracting a version's index rows (FHIRPath over the
//! resource) was a sixth of the HL7 writer's time, and the writer is the one thing every message
//! waits for. A version's rows depend on three things the writer alone knows — its id, its
//! meta, and what the references to other entries become — so the sender extracts them from a
//! draft in which every entry's id is a placeholder (`<nonce>-<entry>`), and the writer puts
//! the real ids in.
//!
//! That is exact because extraction copies reference strings into reference rows and reads
//! nothing else from them but their type, which the placeholder keeps. The parameters that read
//! the id or meta (`AT_WRITE`) are left to the writer; a placeholder that turns up anywhere
//! else, a reference the draft could not name, a type with custom parameters, or a change of
//! the custom parameters since, and the writer extracts the whole version itself.
//!
//! The body is serialized here too (serializing it was another ~6 % of the writer's time):
//! all but the id, versionId and lastUpdated, with the placeholders in. Each placeholder is a
//! whole JSON string, as is the `Type/id` the writer puts in its place, and neither needs
//! escaping, so the writer resolves them in the bytes. One it cannot resolve, and the writer
//! rewrites and serializes the resource itself, which reports the reference.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use super::transaction::{Method, Request, collect_references, replace_references};
use crate::resource::{self, BodyParts};
use crate::search::Registry;
use crate::search::index::{extract_some, split_reference};
use crate::store::{Filter, IndexRows};

/// Parameters read from what stamping sets (`id`, `meta.versionId`, `meta.lastUpdated`).
pub(super) const AT_WRITE: &[&str] = &["_id", "_lastUpdated"];

/// One transaction's drafted index rows, by entry, and a copy of its resources for the writer
/// to change. Each is taken by the first attempt at the transaction; another attempt (a group
/// retried in savepoints) makes its own.
pub struct Drafts {
    nonce: String,
    generation: u64,
    /// For each entry that has a fullUrl: it, and the placeholder reference (`Type/<nonce>-i`)
    /// the drafts use for it.
    names: Vec<(String, String)>,
    drafted: Vec<Mutex<Option<Drafted>>>,
    resources: Mutex<Option<Vec<Option<Value>>>>,
    /// The copies the writer did not need: dropped with the drafts, on the sender's side.
    unneeded: Mutex<Vec<Option<Value>>>,
    /// The queries of the entries' conditions, planned by the sender: (type, condition, query).
    /// Reused by every attempt; the writer plans again only after a change of the custom
    /// parameters.
    conditions: Vec<(String, String, Filter)>,
}

impl Drafts {
    /// Extracts the rows of every POST and PUT in `requests`, where it can.
    pub fn make(registry: &Registry, requests: &[Request]) -> Drafts {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let generation = registry.generation();
        let names: Vec<(String, String)> = requests
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((r.full_url.clone()?, format!("{}/{nonce}-{i}", type_of(&r.url)?))))
            .collect();
        let by_full: HashMap<String, String> = names.iter().cloned().collect();
        let back: HashMap<String, String> = names.iter().map(|(f, p)| (p.clone(), f.clone())).collect();
        // The writer's copy of each resource is drafted on, then put back as it was.
        let mut copies: Vec<Option<Value>> = requests.iter().map(|r| r.resource.clone()).collect();
        let drafted = requests
            .iter()
            .zip(copies.iter_mut())
            .enumerate()
            .map(|(i, (r, copy))| {
                let names = (&by_full, &back);
                Mutex::new(copy.as_mut().and_then(|v| draft(registry, r, v, &format!("{nonce}-{i}"), names)))
            })
            .collect();
        let resources = Mutex::new(Some(copies));
        let unneeded = Mutex::new(Vec::new());
        Drafts { nonce, generation, names, drafted, resources, unneeded, conditions: Vec::new() }
    }

    /// With the queries of the `requests`' conditions planned by `plan` (one that cannot be is
    /// left to the writer, which reports why).
    pub fn with_conditions(
        mut self,
        requests: &[Request],
        plan: impl Fn(&str, &str) -> crate::error::Result<Filter>,
    ) -> Drafts {
        self.conditions = super::transaction::conditions(requests)
            .into_iter()
            .filter_map(|(t, q)| Some((t.to_string(), q.to_string(), plan(t, q).ok()?)))
            .collect();
        self
    }

    /// The planned query of `condition` on `rtype`, if it still holds.
    pub(super) fn condition(&self, registry: &Registry, rtype: &str, condition: &str) -> Option<&Filter> {
        if registry.generation() != self.generation {
            return None;
        }
        self.conditions.iter().find(|(t, q, _)| t == rtype && q == condition).map(|(_, _, f)| f)
    }

    /// The copies of the requests' resources that `needed` asks for, if no attempt took them
    /// yet. The others stay here, to be dropped with the drafts by the sender, not the writer.
    pub(super) fn resources(&self, needed: impl Fn(usize) -> bool) -> Option<Vec<Option<Value>>> {
        let mut all = self.resources.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        let taken =
            all.iter_mut().enumerate().map(|(i, v)| if needed(i) { v.take() } else { None }).collect();
        *self.unneeded.lock().unwrap_or_else(|e| e.into_inner()) = all;
        Some(taken)
    }

    /// What each placeholder stands for, once the writer has decided each fullUrl's `Type/id`.
    pub(super) fn resolver<'a>(&'a self, aliases: &'a HashMap<String, String>) -> Resolver<'a> {
        let mut real: HashMap<&str, &str> = HashMap::with_capacity(self.names.len());
        for (full, placeholder) in &self.names {
            if let Some(to) = aliases.get(full) {
                real.insert(placeholder.as_str(), to.as_str());
            }
        }
        Resolver { nonce: &self.nonce, real }
    }

    /// Entry `i`'s rows with the real ids in, all but the [`AT_WRITE`] ones, and its body
    /// ready for its stamp, if it has one. `None`: the writer extracts and serializes itself.
    pub(super) fn take(&self, registry: &Registry, i: usize, real: &Resolver<'_>) -> Option<Drafted> {
        if registry.generation() != self.generation {
            return None;
        }
        let Drafted { mut rows, body } =
            self.drafted.get(i)?.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        for r in &mut rows.references {
            if !r.url.contains(real.nonce) {
                continue;
            }
            let to = real.real.get(r.url.as_str())?;
            let (t, id) = split_reference(to)?;
            if r.target_type.as_deref() != Some(t) {
                return None;
            }
            (r.target_id, r.url) = (Some(id.to_string()), to.to_string());
        }
        if mentions(&rows, real.nonce) {
            return None;
        }
        rows.dedup();
        let body = body.and_then(|b| real.body(b));
        Some(Drafted { rows, body })
    }
}

/// An entry's draft: its index rows and, unless the writer must see the stamped resource
/// itself, its body serialized (with the placeholders in until [`Drafts::take`]).
pub(super) struct Drafted {
    pub rows: IndexRows,
    pub body: Option<BodyParts>,
}

/// The placeholders of one transaction and the `Type/id` each became.
pub(super) struct Resolver<'a> {
    nonce: &'a str,
    real: HashMap<&'a str, &'a str>,
}

impl Resolver<'_> {
    /// The body with every placeholder replaced; `None` if one has nothing to stand for (the
    /// writer then rewrites the resource itself, and reports it).
    fn body(&self, b: BodyParts) -> Option<BodyParts> {
        Some(BodyParts { meta: self.replace(b.meta)?, rest: self.replace(b.rest)?, ..b })
    }

    /// Each placeholder is a whole JSON string (`"Type/<nonce>-i"`), never escaped, as is the
    /// `Type/id` it becomes.
    fn replace(&self, text: String) -> Option<String> {
        if !text.contains(self.nonce) {
            return Some(text);
        }
        let mut out = String::with_capacity(text.len() + 64);
        let mut done = 0;
        for (at, _) in text.match_indices(self.nonce) {
            let start = text[..at].rfind('"')? + 1;
            let end = at + text[at..].find('"')?;
            if start < done {
                return None;
            }
            out.push_str(&text[done..start]);
            out.push_str(self.real.get(&text[start..end])?);
            done = end;
        }
        out.push_str(&text[done..]);
        Some(out)
    }
}

/// The resource type a request's URL writes.
fn type_of(url: &str) -> Option<&str> {
    let t = url.split(['?', '/']).next()?;
    resource::is_resource_type(t).then_some(t)
}

/// The rows of one entry's draft: its resource with `id` for an id and the placeholders for
/// the other entries' fullUrls. `value` is a copy of the entry's resource, changed for the
/// extraction and changed back (`names`: fullUrl → placeholder, and back), which saves a
/// copy of every resource.
fn draft(
    registry: &Registry,
    r: &Request,
    value: &mut Value,
    id: &str,
    (names, back): (&HashMap<String, String>, &HashMap<String, String>),
) -> Option<Drafted> {
    if !matches!(r.method, Method::Post | Method::Put) {
        return None;
    }
    let rtype = type_of(&r.url)?;
    if registry.has_custom(rtype) {
        return None;
    }
    let mut refs = Vec::new();
    collect_references(value, &mut refs);
    // What the writer would resolve otherwise (a conditional reference, an unknown fullUrl)
    // is not drafted.
    let unnamed = |s: &String| {
        !names.contains_key(s)
            && (s.starts_with("urn:")
                || s.split_once('?').is_some_and(|(t, _)| resource::is_resource_type(t)))
    };
    if refs.iter().any(unnamed) {
        return None;
    }
    let had_id = value.as_object_mut()?.insert("id".into(), Value::String(id.into()));
    replace_references(value, names);
    let rows = extract_some(registry, rtype, value, |code| !AT_WRITE.contains(&code));
    let body = if needs_stamped(registry, rtype) { None } else { BodyParts::of(value) };
    // Placeholders carry the nonce, so no reference the client wrote is taken for one.
    replace_references(value, back);
    let obj = value.as_object_mut()?;
    match had_id {
        Some(v) => obj.insert("id".into(), v),
        None => obj.shift_remove("id"),
    };
    Some(Drafted { rows, body })
}

/// True when the writer must see a version of `rtype` as stamped: it checks a SearchParameter,
/// and extracts the [`AT_WRITE`] parameters if one of them is indexed (`_id` and
/// `_lastUpdated` are otherwise read from the resource row, not index rows).
pub(super) fn needs_stamped(registry: &Registry, rtype: &str) -> bool {
    rtype == "SearchParameter"
        || AT_WRITE.iter().any(|c| registry.get(rtype, c).is_some_and(|p| p.in_index_tables()))
}

/// True when a placeholder is anywhere but in a reference row's reference (which `rows` has
/// replaced already).
fn mentions(rows: &IndexRows, nonce: &str) -> bool {
    let has = |s: &str| s.contains(nonce);
    let opt = |s: &Option<String>| s.as_deref().is_some_and(has);
    rows.tokens.iter().any(|r| opt(&r.system) || has(&r.code))
        || rows.strings.iter().any(|r| has(&r.norm) || has(&r.exact))
        || rows.references.iter().any(|r| has(&r.url) || opt(&r.target_id) || opt(&r.target_type))
        || rows.numbers.iter().any(|r| opt(&r.system) || opt(&r.code))
        || rows.uris.iter().any(|r| has(&r.uri))
        || rows
            .composites
            .iter()
            .any(|r| opt(&r.c_system) || has(&r.c_code) || opt(&r.system) || opt(&r.code) || opt(&r.norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::index::extract;

    fn urn(i: usize) -> String {
        format!("urn:uuid:00000000-0000-4000-8000-{i:012}")
    }

    /// The demo data set as one transaction: every entry under a urn:uuid fullUrl, and every
    /// reference to another entry written as that fullUrl.
    fn demo_transaction() -> Vec<Request> {
        let demo: Value = serde_json::from_str(include_str!("../../examples/demo/demo.json")).unwrap();
        let entries = demo["entry"].as_array().unwrap();
        let key =
            |e: &Value| format!("{}/{}", e["resourceType"].as_str().unwrap(), e["id"].as_str().unwrap());
        let to_urn: HashMap<String, String> =
            entries.iter().enumerate().map(|(i, e)| (key(&e["resource"]), urn(i))).collect();
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut r = e["resource"].clone();
                replace_references(&mut r, &to_urn);
                let rtype = r["resourceType"].as_str().unwrap().to_string();
                let (method, url) = match i % 2 {
                    0 => (Method::Post, rtype),
                    _ => (Method::Put, format!("{rtype}?identifier=x{i}")),
                };
                Request {
                    method,
                    url,
                    full_url: Some(urn(i)),
                    resource: Some(r),
                    if_match: None,
                    if_none_exist: None,
                }
            })
            .collect()
    }

    /// What the writer makes each fullUrl: a new id per entry.
    fn aliases(requests: &[Request]) -> HashMap<String, String> {
        let at = |r: &Request| format!("{}/{}", type_of(&r.url).unwrap(), crate::engine::new_id());
        requests.iter().enumerate().map(|(i, r)| (urn(i), at(r))).collect()
    }

    #[test]
    fn drafted_rows_are_the_rows_of_the_stamped_version() {
        let registry = Registry::new();
        let mut requests = demo_transaction();
        // Some with an id (as PUTs may have), some without (as POSTs from HL7 v2 have).
        for r in requests.iter_mut().step_by(2) {
            r.resource.as_mut().and_then(Value::as_object_mut).unwrap().shift_remove("id");
        }
        // And a meta of its own for one of each (kept, beside the stamped versionId and
        // lastUpdated).
        for r in requests.iter_mut().take(2) {
            r.resource.as_mut().unwrap()["meta"] = serde_json::json!({"lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"code": "t"}], "versionId": "9"});
        }
        let drafts = Drafts::make(&registry, &requests);
        // The writer's copies were drafted on and are back as they were, to the key order.
        let copies = drafts.resources(|i| i % 3 == 0).unwrap();
        let bytes = |v: &Option<Value>| serde_json::to_string(v).unwrap();
        for (i, (c, r)) in copies.iter().zip(&requests).enumerate() {
            assert_eq!(bytes(c), bytes(&if i % 3 == 0 { r.resource.clone() } else { None }));
        }
        assert!(drafts.resources(|_| true).is_none(), "taken once");
        assert!(requests.iter().any(|r| r.resource.as_ref().is_some_and(|v| v.get("id").is_some())));
        assert!(requests.iter().any(|r| r.resource.as_ref().is_some_and(|v| v.get("id").is_none())));
        let aliases = aliases(&requests);
        let real = drafts.resolver(&aliases);
        let mut to_entries = 0;
        for (i, r) in requests.iter().enumerate() {
            let (rtype, id) = split_reference(&aliases[&urn(i)]).unwrap();
            let mut value = r.resource.clone().unwrap();
            replace_references(&mut value, &aliases);
            let at = 1_700_000_000_000;
            let body = resource::stamped_body(&value, id, 3, at).unwrap();
            let stamped = resource::stamp(value, id, 3, at);
            let expected = extract(&registry, rtype, &stamped);
            let Drafted { mut rows, body: drafted } =
                drafts.take(&registry, i, &real).unwrap_or_else(|| panic!("entry {i} drafted"));
            // The body serialized ahead, placeholders resolved, is the stamped one byte for byte.
            let drafted = drafted.unwrap_or_else(|| panic!("entry {i}'s body")).stamped(id, 3, at).unwrap();
            assert_eq!(String::from_utf8(drafted).unwrap(), String::from_utf8(body).unwrap());
            rows.extend(extract_some(&registry, rtype, &stamped, |c| AT_WRITE.contains(&c)));
            assert_eq!(rows, expected, "{rtype} (entry {i})");
            to_entries +=
                expected.references.iter().filter(|r| aliases.values().any(|a| *a == r.url)).count();
        }
        // The demo's references between its resources all went through the placeholders.
        assert!(to_entries > 100, "{to_entries} references to other entries");
    }

    #[test]
    fn what_the_writer_resolves_is_not_drafted() {
        let registry = Registry::new();
        let mut requests = demo_transaction();
        let patient = requests.iter().position(|r| r.url.starts_with("Patient")).unwrap();
        let at = |requests: &mut Vec<Request>, reference: &str| {
            let mut r = requests[patient].clone();
            r.resource.as_mut().unwrap()["managingOrganization"] =
                serde_json::json!({"reference": reference});
            requests.push(r);
            requests.len() - 1
        };
        let conditional = at(&mut requests, "Organization?identifier=x");
        let unknown = at(&mut requests, "urn:uuid:not-an-entry");
        let literal = at(&mut requests, "Organization/elsewhere");
        let drafts = Drafts::make(&registry, &requests);
        let aliases = aliases(&requests);
        let take = |d: &Drafts, i: usize, aliases: &HashMap<String, String>| {
            d.take(&registry, i, &d.resolver(aliases))
        };
        assert!(take(&drafts, conditional, &aliases).is_none());
        assert!(take(&drafts, unknown, &aliases).is_none());
        assert!(take(&drafts, literal, &aliases).is_some());
        // Taken once: another attempt extracts them itself.
        assert!(take(&drafts, literal, &aliases).is_none());
        // An entry whose fullUrl the writer did not resolve: its referrers are extracted again.
        let mut partial = aliases.clone();
        partial.remove(&urn(patient));
        let referrer = requests.iter().position(|r| {
            r.resource.as_ref().is_some_and(|v| v.to_string().contains(&format!("\"{}\"", urn(patient))))
        });
        assert!(take(&drafts, referrer.unwrap(), &partial).is_none());
        // A placeholder only in an element no parameter indexes: the rows are drafted, the
        // body is left to the writer.
        let mut requests = requests;
        let unindexed = at(&mut requests, "Organization/x");
        requests[unindexed].resource.as_mut().unwrap()["extension"] = serde_json::json!([
            {"url": "http://example.org/x", "valueReference": {"reference": urn(patient)}}
        ]);
        let drafts = Drafts::make(&registry, &requests);
        let drafted = take(&drafts, unindexed, &partial).unwrap();
        assert!(drafted.body.is_none());
        let drafts = Drafts::make(&registry, &requests);
        assert!(
            take(&drafts, unindexed, &aliases).unwrap().body.unwrap().rest.contains(&aliases[&urn(patient)])
        );
        // A change to the custom parameters since the drafts were made.
        let drafts = Drafts::make(&registry, &requests);
        registry.set_custom("sp", Vec::new());
        assert!(take(&drafts, literal, &aliases).is_none());
    }

    #[test]
    fn planned_conditions_are_found_by_type_and_condition_until_the_parameters_change() {
        let registry = Registry::new();
        let requests = demo_transaction();
        let plan = |t: &str, q: &str| {
            if q.ends_with('3') {
                return Err(crate::error::Error::Internal("not this one".into()));
            }
            Ok(Filter { sql: format!("{t} {q}"), binds: Vec::new() })
        };
        let drafts = Drafts::make(&registry, &requests).with_conditions(&requests, plan);
        // Every other demo entry is a conditional update (`identifier=x<i>`).
        let (t, q) = requests[1].url.split_once('?').unwrap();
        assert_eq!(
            drafts.condition(&registry, t, q).map(|f| f.sql.as_str()),
            Some(format!("{t} {q}").as_str())
        );
        assert!(drafts.condition(&registry, "Basic", q).is_none());
        // One the sender could not plan is the writer's to plan (and to report).
        let (t, q) = requests[3].url.split_once('?').unwrap();
        assert!(drafts.condition(&registry, t, q).is_none());
        registry.set_custom("sp", Vec::new());
        let (t, q) = requests[1].url.split_once('?').unwrap();
        assert!(drafts.condition(&registry, t, q).is_none());
    }
}
