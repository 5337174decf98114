//! Batch and transaction Bundles (http.html#transaction).
//!
//! A transaction runs in one store transaction: conditions and conditional references are
//! resolved first (under their advisory locks), then every `urn:uuid:`/`urn:oid:` and
//! conditional reference is rewritten, then DELETEs, POSTs and PUTs are written in that order.
//! GETs run after the commit, so they see what the transaction wrote. Any failure rolls
//! everything back and names the entry. A batch runs each entry on its own.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::Value;

use super::draft::{Drafted, Drafts};
use super::write::{Source, Stamped, check_if_match, multiple_matches, stamp_version};
use super::{Deleted, Engine, SearchResult, Written};
use crate::error::{Error, IssueCode, Result};
use crate::resource;
use crate::search::Handling;
use crate::store::{Current, Tx, Version};

/// Fewest new versions in a transaction for which they are stamped on another thread.
const STAMP_AHEAD_MIN: usize = 16;

/// Most entries accepted in one Bundle.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    // Declared in the order a transaction processes them.
    Delete,
    Post,
    Put,
    Get,
}

/// One entry's request, as the Bundle states it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// `Type`, `Type/id`, `Type?criteria`, `Type/id/_history/v`, relative to the base.
    pub url: String,
    pub full_url: Option<String>,
    pub resource: Option<Value>,
    pub if_match: Option<i64>,
    pub if_none_exist: Option<String>,
}

/// What one entry did.
pub enum Outcome {
    Written(Written),
    Deleted(Deleted),
    Read(Version),
    /// A search and the entry's URL (`Type?query`), for the result's links.
    Searched(Box<SearchResult>, String),
}

/// GETs a Bundle may hold: `Type[?query]`, `Type/id`, `Type/id/_history/v`.
fn get_shape(url: &str) -> Result<()> {
    let path = url.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.split('/').collect();
    let ok = match parts.as_slice() {
        [t] => resource::is_resource_type(t),
        [t, id] | [t, id, "_history", _] => resource::is_resource_type(t) && resource::valid_id(id),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(IssueCode::NotSupported, format!("GET {url} is not supported in a Bundle")))
    }
}

/// `batch` or `transaction`, and each entry's request (or why it is not one: a batch answers
/// that entry alone, a transaction fails).
pub fn parse_bundle(bundle: &Value) -> Result<(bool, Vec<Result<Request>>)> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Error::invalid(
            IssueCode::Invalid,
            "the body must be a Bundle of type batch or transaction",
        ));
    }
    let transaction = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => true,
        Some("batch") => false,
        other => {
            return Err(Error::invalid_at(
                IssueCode::Value,
                format!("Bundle.type must be batch or transaction, got {other:?}"),
                "Bundle.type",
            ));
        }
    };
    let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if entries.len() > MAX_ENTRIES {
        return Err(Error::invalid_at(
            IssueCode::TooLarge,
            format!("the Bundle has {} entries; at most {MAX_ENTRIES} are accepted", entries.len()),
            "Bundle.entry",
        ));
    }
    let requests =
        entries.iter().enumerate().map(|(i, e)| parse_entry(e).map_err(|err| err.in_entry(i))).collect();
    Ok((transaction, requests))
}

fn parse_entry(entry: &Value) -> Result<Request> {
    let text = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).map(str::to_string);
    let request = entry
        .get("request")
        .ok_or_else(|| Error::invalid_at(IssueCode::Required, "every entry needs a request", "request"))?;
    let method = match text(request, "method").as_deref() {
        Some("GET" | "HEAD") => Method::Get,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("DELETE") => Method::Delete,
        Some("PATCH") => {
            return Err(Error::NotImplemented("PATCH inside a Bundle is not supported yet".into()));
        }
        other => {
            return Err(Error::invalid_at(
                IssueCode::Value,
                format!("unknown method {other:?}"),
                "request.method",
            ));
        }
    };
    let url = text(request, "url")
        .ok_or_else(|| Error::invalid_at(IssueCode::Required, "request.url is required", "request.url"))?;
    let if_match = match text(request, "ifMatch") {
        Some(m) => Some(resource::parse_etag(&m)?),
        None => None,
    };
    let resource = entry.get("resource").cloned();
    if matches!(method, Method::Post | Method::Put) && resource.is_none() {
        return Err(Error::invalid_at(
            IssueCode::Required,
            "POST and PUT entries need a resource",
            "resource",
        ));
    }
    Ok(Request {
        method,
        url: url.trim_start_matches('/').to_string(),
        full_url: text(entry, "fullUrl"),
        resource,
        if_match,
        if_none_exist: text(request, "ifNoneExist").map(|c| c.trim_start_matches('?').to_string()),
    })
}

/// What can be checked before the database is touched: GET shapes, fullUrls used once, and
/// every resource valid.
pub(super) fn check_requests(requests: &[Request]) -> Result<()> {
    let mut full_urls = HashSet::new();
    for (i, r) in requests.iter().enumerate() {
        let mut check = || -> Result<()> {
            if r.method == Method::Get {
                get_shape(&r.url)?;
            }
            if let Some(full) = &r.full_url
                && r.method != Method::Get
                && !full_urls.insert(full.clone())
            {
                return Err(Error::invalid(IssueCode::Duplicate, format!("fullUrl {full} appears twice")));
            }
            if let Some(v) = &r.resource {
                let rtype = match target(&r.url)? {
                    Target::Type(t) | Target::Instance(t, _) | Target::Condition(t, _) => t,
                };
                resource::validate(rtype, v)?;
            }
            Ok(())
        };
        check().map_err(|e| e.in_entry(i))?;
    }
    Ok(())
}

/// The target of an entry's URL.
enum Target<'a> {
    Type(&'a str),
    Instance(&'a str, &'a str),
    Condition(&'a str, &'a str),
}

/// The conditions a transaction's entries are written under, as (type, condition): conditional
/// creates and conditional updates.
pub(super) fn conditions(requests: &[Request]) -> Vec<(&str, &str)> {
    requests
        .iter()
        .filter_map(|r| match (r.method, target(&r.url).ok()?) {
            (Method::Post, Target::Type(t)) => Some((t, r.if_none_exist.as_deref()?)),
            (Method::Put, Target::Condition(t, q)) => Some((t, q)),
            _ => None,
        })
        .collect()
}

fn target(url: &str) -> Result<Target<'_>> {
    let path = url.split('?').next().unwrap_or_default();
    let rtype = path.split('/').next().unwrap_or_default();
    if !resource::is_resource_type(rtype) {
        return Err(Error::UnknownType(rtype.to_string()));
    }
    if let Some((_, query)) = url.split_once('?')
        && !path.contains('/')
    {
        return Ok(Target::Condition(rtype, query));
    }
    match path.split('/').nth(1) {
        None | Some("") => Ok(Target::Type(rtype)),
        Some(id) => Ok(Target::Instance(rtype, id)),
    }
}

impl Engine {
    /// Each entry on its own; one entry's failure is its own answer.
    pub async fn batch(&self, requests: Vec<Result<Request>>) -> Vec<Result<Outcome>> {
        let mut out = Vec::with_capacity(requests.len());
        for (i, r) in requests.into_iter().enumerate() {
            out.push(match r {
                Ok(r) => self.one(r).await.map_err(|e| e.in_entry(i)),
                Err(e) => Err(e),
            });
        }
        out
    }

    async fn one(&self, r: Request) -> Result<Outcome> {
        match (r.method, target(&r.url)?) {
            (Method::Get, _) => self.get(&r.url).await,
            (Method::Post, Target::Type(t)) => {
                let value = r.resource.unwrap_or_default();
                Ok(Outcome::Written(self.create(t, value, r.if_none_exist.as_deref()).await?))
            }
            (Method::Put, Target::Instance(t, id)) => {
                Ok(Outcome::Written(self.update(t, id, r.resource.unwrap_or_default(), r.if_match).await?))
            }
            (Method::Put, Target::Condition(t, q)) => Ok(Outcome::Written(
                self.conditional_update(t, q, r.resource.unwrap_or_default(), r.if_match).await?,
            )),
            (Method::Delete, Target::Instance(t, id)) => {
                Ok(Outcome::Deleted(self.delete(t, id, r.if_match).await?))
            }
            (Method::Delete, Target::Condition(t, q)) => {
                Ok(Outcome::Deleted(self.conditional_delete(t, q).await?))
            }
            _ => Err(Error::invalid(
                IssueCode::Value,
                format!("{:?} {} is not a valid entry request", r.method, r.url),
            )),
        }
    }

    /// A read, version read or search, as an entry's GET.
    async fn get(&self, url: &str) -> Result<Outcome> {
        get_shape(url)?;
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [t] => Ok(Outcome::Searched(
                Box::new(self.search(t, query, Handling::Lenient).await?),
                url.to_string(),
            )),
            [t, id] => Ok(Outcome::Read(self.read(t, id).await?)),
            [t, id, "_history", v] => Ok(Outcome::Read(self.vread(t, id, v).await?)),
            _ => Err(Error::invalid(
                IssueCode::NotSupported,
                format!("GET {url} is not supported in a Bundle"),
            )),
        }
    }

    /// All entries or none. The outcomes come back in the entries' order.
    /// A GET that fails after the commit is that entry's answer, not the transaction's.
    pub async fn transaction(&self, requests: Vec<Request>) -> Result<Vec<Result<Outcome>>> {
        check_requests(&requests)?;
        // Server-assigned ids for creates, fixed across retries.
        let ids: Vec<String> = requests.iter().map(|_| super::new_id()).collect();
        let written = self.retry(|| self.try_transaction(&requests, &ids)).await?;
        Ok(self.finish(&requests, written).await)
    }

    /// After the commit: search parameters written or deleted take effect, and GETs run.
    pub(super) async fn finish(
        &self,
        requests: &[Request],
        written: Vec<Option<Change>>,
    ) -> Vec<Result<Outcome>> {
        let outcomes: Vec<Option<Outcome>> = written.into_iter().map(|o| o.map(Outcome::from)).collect();
        for v in outcomes.iter().flatten().filter_map(Outcome::version) {
            if let Err(e) = self.custom_params_written(v).await {
                tracing::warn!("{}/{} was stored but is not active: {e}", v.rtype, v.id);
            }
        }
        for r in requests.iter().filter(|r| r.method == Method::Delete) {
            if let Ok(Target::Instance("SearchParameter", id)) = target(&r.url) {
                self.registry.set_custom(id, Vec::new());
            }
        }
        let mut results = Vec::with_capacity(requests.len());
        for (i, (r, o)) in requests.iter().zip(outcomes).enumerate() {
            results.push(match o {
                Some(o) => Ok(o),
                None if r.method == Method::Get => self.get(&r.url).await.map_err(|e| e.in_entry(i)),
                None => Err(Error::Internal(format!("entry {i} was not processed"))),
            });
        }
        results
    }

    async fn try_transaction(&self, requests: &[Request], ids: &[String]) -> Result<Vec<Option<Change>>> {
        let mut tx = self.store.begin().await?;
        let out = self.apply(&mut tx, requests, ids, None).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// The transaction's writes inside `tx`: conditions, references, then the writes.
    /// `drafts`: the entries' index rows, when they were extracted ahead.
    pub(super) async fn apply(
        &self,
        tx: &mut Tx,
        requests: &[Request],
        ids: &[String],
        drafts: Option<&Drafts>,
    ) -> Result<Vec<Option<Change>>> {
        let n = requests.len();
        // Phase 1: where each entry writes, and what its fullUrl stands for.
        let mut plan: Vec<Option<Step>> = (0..n).map(|_| None).collect();
        let mut aliases: HashMap<String, String> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        for (i, r) in requests.iter().enumerate() {
            let step = self.resolve(tx, r, &ids[i], drafts).await.map_err(|e| e.in_entry(i))?;
            let Some(step) = step else { continue };
            if let Some(key) = step.key() {
                if !seen.insert(key.clone()) {
                    return Err(Error::invalid(
                        IssueCode::Duplicate,
                        format!("{key} appears in more than one entry of the transaction"),
                    )
                    .in_entry(i));
                }
                if let Some(full) = &r.full_url {
                    aliases.insert(full.clone(), key);
                }
            }
            plan[i] = Some(step);
        }
        // Phase 2: references to other entries and conditional references. A drafted entry
        // whose body was serialized ahead has them resolved in its bytes; the others are
        // rewritten in a copy of the resource.
        let mut drafted: Vec<Option<Drafted>> = match drafts {
            Some(d) => {
                let real = d.resolver(&aliases);
                (0..n).map(|i| d.take(&self.registry, i, &real)).collect()
            }
            None => (0..n).map(|_| None).collect(),
        };
        let needed = |i: usize| drafted[i].as_ref().is_none_or(|d| d.body.is_none());
        let mut resources: Vec<Option<Value>> =
            drafts.and_then(|d| d.resources(needed)).unwrap_or_else(|| {
                requests
                    .iter()
                    .enumerate()
                    .map(|(i, r)| r.resource.as_ref().filter(|_| needed(i)).cloned())
                    .collect()
            });
        for (i, res) in resources.iter_mut().enumerate() {
            if let Some(v) = res {
                self.rewrite(tx, v, &aliases, drafts).await.map_err(|e| e.in_entry(i))?;
            }
        }
        // Phase 3: DELETE, then POST, then PUT.
        let mut order: Vec<usize> = (0..n).filter(|i| plan[*i].is_some()).collect();
        order.sort_by_key(|i| requests[*i].method);
        // What each new version is based on, read before any is written: the entries are
        // distinct resources, so no write changes another's base.
        let mut steps: Vec<(usize, Next)> = Vec::with_capacity(order.len());
        for i in order {
            let next = match plan[i].take() {
                Some(Step::Create(t, id)) => {
                    Next::Write(Base { rtype: t, id, current: None, method: "POST" })
                }
                Some(Step::PutNew(t, id)) => Next::Write(Base { rtype: t, id, current: None, method: "PUT" }),
                Some(Step::Put(t, id)) => {
                    let current = tx.current(&t, &id).await.map_err(|e| e.in_entry(i))?;
                    check_if_match(current.as_ref(), requests[i].if_match).map_err(|e| e.in_entry(i))?;
                    Next::Write(Base { rtype: t, id, current, method: "PUT" })
                }
                Some(other) => Next::Other(other),
                None => continue,
            };
            steps.push((i, next));
        }
        let mut stamped = self.stamp_ahead(&steps, &mut resources, &mut drafted);
        let mut out: Vec<Option<Change>> = (0..n).map(|_| None).collect();
        for (i, next) in steps {
            let done = match next {
                Next::Write(b) => match stamped.next(i).await {
                    Ok(s) => self
                        .write_stamped(tx, &b.rtype, &b.id, b.current, s, b.method)
                        .await
                        .map(Change::Written),
                    Err(e) => Err(e),
                },
                Next::Other(step) => self.execute(tx, step).await,
            };
            out[i] = Some(done.map_err(|e| e.in_entry(i))?);
        }
        Ok(out)
    }

    /// Stamps the new versions among `steps`, in their order: the first here, the others on a
    /// blocking thread while the writer writes the ones before them. (Serializing and
    /// indexing a version is about a third of a write's time on the writer.)
    fn stamp_ahead(
        &self,
        steps: &[(usize, Next)],
        resources: &mut [Option<Value>],
        drafted: &mut [Option<Drafted>],
    ) -> StampQueue {
        let mut jobs: Vec<StampJob> = steps
            .iter()
            .filter_map(|(i, next)| match next {
                Next::Write(b) => {
                    let source = match drafted[*i].take() {
                        Some(Drafted { rows, body: Some(body) }) => Source::Drafted(rows, body),
                        d => Source::Value(with_id(resources[*i].take(), &b.id), d.map(|d| d.rows)),
                    };
                    Some((*i, b.rtype.clone(), b.id.clone(), b.current, source))
                }
                Next::Other(_) => None,
            })
            .collect();
        let mut queue = StampQueue { ready: VecDeque::new(), later: None };
        // A few versions are made here: handing them to another thread and waiting for them
        // measured slower (for an HL7 message's four) than making them.
        let rest = if jobs.len() < STAMP_AHEAD_MIN { Vec::new() } else { jobs.split_off(1) };
        for (i, rtype, id, current, source) in jobs {
            queue.ready.push_back((i, stamp_version(&self.registry, &rtype, &id, current, source)));
        }
        if !rest.is_empty() {
            let (send, receive) = tokio::sync::mpsc::unbounded_channel();
            let registry = self.registry.clone();
            tokio::task::spawn_blocking(move || {
                for (i, rtype, id, current, source) in rest {
                    // The writer gave up (an entry failed): the rest is not needed.
                    if send.send((i, stamp_version(&registry, &rtype, &id, current, source))).is_err() {
                        break;
                    }
                }
            });
            queue.later = Some(receive);
        }
        queue
    }

    /// Decides an entry's write inside the transaction: conditions are resolved here.
    async fn resolve(
        &self,
        tx: &mut Tx,
        r: &Request,
        new_id: &str,
        planned: Option<&Drafts>,
    ) -> Result<Option<Step>> {
        let step = match (r.method, target(&r.url)?) {
            (Method::Get, _) => return Ok(None),
            (Method::Post, Target::Type(t)) => match &r.if_none_exist {
                Some(cond) => match self.find_for_condition(tx, t, cond, planned).await?.as_slice() {
                    [] => Step::Create(t.into(), new_id.into()),
                    [(_, id)] => Step::Existing(t.into(), id.clone()),
                    _ => return Err(multiple_matches(t, cond)),
                },
                None => Step::Create(t.into(), new_id.into()),
            },
            (Method::Put, Target::Instance(t, id)) => {
                if !resource::valid_id(id) {
                    return Err(Error::invalid(IssueCode::Value, format!("'{id}' is not a valid id")));
                }
                if body_id(r).is_some_and(|b| b != id) {
                    return Err(Error::invalid_at(
                        IssueCode::Invalid,
                        format!("the resource's id is not {id}, the id in request.url"),
                        "id",
                    ));
                }
                Step::Put(t.into(), id.into())
            }
            (Method::Put, Target::Condition(t, q)) => {
                match self.find_for_condition(tx, t, q, planned).await?.as_slice() {
                    [] => match body_id(r) {
                        Some(id) => Step::Put(t.into(), id),
                        // A new id: no row can have it, so none is looked up.
                        None if r.if_match.is_none() => Step::PutNew(t.into(), new_id.into()),
                        None => Step::Put(t.into(), new_id.into()),
                    },
                    [(_, id)] if body_id(r).is_none_or(|b| b == *id) => Step::Put(t.into(), id.clone()),
                    [(_, id)] => {
                        return Err(Error::invalid_at(
                            IssueCode::Invalid,
                            format!("the resource's id is not {id}, the id of the match"),
                            "id",
                        ));
                    }
                    _ => return Err(multiple_matches(t, q)),
                }
            }
            (Method::Delete, Target::Instance(t, id)) => Step::Delete(t.into(), id.into(), r.if_match),
            (Method::Delete, Target::Condition(t, q)) => {
                match self.find_for_condition(tx, t, q, planned).await?.as_slice() {
                    [] => Step::Nothing,
                    [(_, id)] => Step::Delete(t.into(), id.clone(), r.if_match),
                    _ => return Err(multiple_matches(t, q)),
                }
            }
            (m, _) => {
                return Err(Error::invalid(
                    IssueCode::Value,
                    format!("{m:?} {} is not a valid entry request", r.url),
                ));
            }
        };
        Ok(Some(step))
    }

    /// Rewrites every `reference` that names another entry's fullUrl or is a conditional
    /// reference (`Patient?identifier=…`, which must match exactly one resource).
    async fn rewrite(
        &self,
        tx: &mut Tx,
        value: &mut Value,
        aliases: &HashMap<String, String>,
        planned: Option<&Drafts>,
    ) -> Result<()> {
        let mut refs: Vec<String> = Vec::new();
        collect_references(value, &mut refs);
        let mut resolved: HashMap<String, String> = HashMap::new();
        for r in refs {
            if resolved.contains_key(&r) {
                continue;
            }
            if let Some(to) = aliases.get(&r) {
                resolved.insert(r, to.clone());
            } else if r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
                return Err(Error::invalid(
                    IssueCode::NotFound,
                    format!("'{r}' is not the fullUrl of any entry"),
                ));
            } else if let Some((t, q)) = r.split_once('?').filter(|(t, _)| resource::is_resource_type(t)) {
                let found = self.find_for_condition(tx, t, q, planned).await?;
                match found.as_slice() {
                    [(_, id)] => {
                        resolved.insert(r.clone(), format!("{t}/{id}"));
                    }
                    [] => {
                        return Err(Error::NotFound(format!(
                            "the conditional reference '{r}' matches nothing"
                        )));
                    }
                    _ => return Err(multiple_matches(t, q)),
                }
            }
        }
        if !resolved.is_empty() {
            replace_references(value, &resolved);
        }
        Ok(())
    }

    /// A step that writes no new version of a resource.
    async fn execute(&self, tx: &mut Tx, step: Step) -> Result<Change> {
        match step {
            Step::Existing(t, id) => {
                let current = tx.current(&t, &id).await?;
                let Some(cur) = current.filter(|c| !c.deleted) else {
                    return Err(Error::Gone(format!("{t}/{id} is deleted")));
                };
                let version = Version {
                    rtype: t,
                    id,
                    version: cur.version,
                    last_updated: cur.last_updated,
                    deleted: false,
                    method: "GET".into(),
                    body: tx.body(cur.rkey).await?,
                };
                Ok(Change::Written(Written { version, created: false, existing: true }))
            }
            Step::Delete(t, id, if_match) => {
                Ok(Change::Deleted(Deleted { version: self.delete_in(tx, &t, &id, if_match).await? }))
            }
            Step::Nothing => Ok(Change::Deleted(Deleted { version: None })),
            Step::Create(..) | Step::Put(..) | Step::PutNew(..) => {
                Err(Error::Internal("a new version was not stamped".into()))
            }
        }
    }
}

/// What an entry does in the transaction's last phase.
enum Next {
    /// A new version of a resource.
    Write(Base),
    /// A step that writes none: a conditional create's match, a delete.
    Other(Step),
}

/// What a new version is written on: the resource, its current row when it has one, and the
/// interaction recorded in its history.
struct Base {
    rtype: String,
    id: String,
    current: Option<Current>,
    method: &'static str,
}

/// An entry, what its new version is written as, and its index rows if drafted.
type StampJob = (usize, String, String, Option<Current>, Source);

/// New versions in the order the writer takes them: made already, or coming from the thread
/// that makes them.
struct StampQueue {
    ready: VecDeque<(usize, Result<Stamped>)>,
    later: Option<tokio::sync::mpsc::UnboundedReceiver<(usize, Result<Stamped>)>>,
}

impl StampQueue {
    /// The version for entry `i` (entries are taken in the order they were queued).
    async fn next(&mut self, i: usize) -> Result<Stamped> {
        let next = match self.ready.pop_front() {
            Some(n) => Some(n),
            None => match &mut self.later {
                Some(rx) => rx.recv().await,
                None => None,
            },
        };
        match next {
            Some((at, stamped)) if at == i => stamped,
            _ => Err(Error::Internal(format!("the new version of entry {i} was not made"))),
        }
    }
}

/// A write the transaction decided on.
enum Step {
    Create(String, String),
    /// A conditional create that matched: nothing is written.
    Existing(String, String),
    Put(String, String),
    /// A conditional update that matched nothing, under a server-assigned id.
    PutNew(String, String),
    /// With the entry's If-Match.
    Delete(String, String, Option<i64>),
    /// A conditional delete that matched nothing.
    Nothing,
}

impl Step {
    /// The resource the step writes, as `Type/id`.
    fn key(&self) -> Option<String> {
        match self {
            Step::Create(t, id)
            | Step::Existing(t, id)
            | Step::Put(t, id)
            | Step::PutNew(t, id)
            | Step::Delete(t, id, _) => Some(format!("{t}/{id}")),
            Step::Nothing => None,
        }
    }
}

/// The write half of an outcome (the retry closure returns these).
pub(super) enum Change {
    Written(Written),
    Deleted(Deleted),
}

impl From<Change> for Outcome {
    fn from(w: Change) -> Outcome {
        match w {
            Change::Written(w) => Outcome::Written(w),
            Change::Deleted(d) => Outcome::Deleted(d),
        }
    }
}

impl Outcome {
    fn version(&self) -> Option<&Version> {
        match self {
            Outcome::Written(w) if !w.existing => Some(&w.version),
            _ => None,
        }
    }
}

fn body_id(r: &Request) -> Option<String> {
    r.resource.as_ref().and_then(|v| v.get("id")).and_then(Value::as_str).map(str::to_string)
}

fn with_id(resource: Option<Value>, id: &str) -> Value {
    let mut value = resource.unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("id".into(), Value::String(id.into()));
    }
    value
}

/// Every `reference` string anywhere in the resource (nested elements, extensions, contained).
pub(super) fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("reference", Value::String(s)) => out.push(s.clone()),
                    _ => collect_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

pub fn replace_references(value: &mut Value, resolved: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if k == "reference" => {
                        if let Some(to) = resolved.get(s.as_str()) {
                            *s = to.clone();
                        }
                    }
                    other => replace_references(other, resolved),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| replace_references(v, resolved)),
        _ => {}
    }
}
