//! Custom search parameters: SearchParameter resources stored through the API. An `active` one
//! is checked before it is stored (its expression must parse, its type must be one we index, it
//! must not redefine an official parameter) and indexed from the next write on; `$reindex`
//! brings older resources up to date.

use serde_json::Value;

use super::registry::{ParamType, Registry, SearchParam, compile, restrict};
use crate::error::{Error, IssueCode, Result};

fn bad(message: impl Into<String>, at: &str) -> Error {
    Error::invalid_at(IssueCode::Value, message.into(), format!("SearchParameter.{at}"))
}

impl Registry {
    /// The parameters a SearchParameter resource defines, one per base type, if it is `active`;
    /// an error if it could not work. `id` is the resource's own id (its earlier version may
    /// hold the same codes).
    pub fn check_custom(&self, id: &str, value: &Value) -> Result<Vec<(String, SearchParam)>> {
        let text = |f: &str| value.get(f).and_then(Value::as_str);
        if text("status") != Some("active") {
            return Ok(Vec::new());
        }
        let code = text("code").ok_or_else(|| bad("a search parameter needs a code", "code"))?;
        if code.starts_with('_') || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad(format!("'{code}' is not a usable parameter code"), "code"));
        }
        let kind: ParamType = serde_json::from_value(value.get("type").cloned().unwrap_or(Value::Null))
            .map_err(|_| bad("type must be a SearchParameter type code", "type"))?;
        if matches!(kind, ParamType::Composite | ParamType::Special) {
            return Err(Error::invalid_at(
                IssueCode::NotSupported,
                format!("custom {} search parameters are not supported", kind.as_str()),
                "SearchParameter.type",
            ));
        }
        let expression = text("expression").ok_or_else(|| bad("an expression is required", "expression"))?;
        let url = text("url").unwrap_or_default();
        let bases: Vec<&str> = value
            .get("base")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if bases.is_empty() {
            return Err(bad("at least one base resource type is required", "base"));
        }
        let targets: Vec<String> = value
            .get("target")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let mut out = Vec::new();
        for base in bases {
            if !crate::resource::is_resource_type(base) {
                return Err(bad(format!("'{base}' is not a resource type"), "base"));
            }
            if self.official(base, code).is_some() {
                return Err(bad(format!("{base} already has an official '{code}' parameter"), "code"));
            }
            if let Some(owner) = self.custom_owner(base, code).filter(|owner| owner != id) {
                return Err(bad(format!("SearchParameter/{owner} already defines {base}.{code}"), "code"));
            }
            let own = restrict(expression, base)
                .ok_or_else(|| bad(format!("the expression has no part for {base}"), "expression"))?;
            crate::fhirpath::parse(&own)
                .map_err(|e| bad(format!("the expression does not parse: {e}"), "expression"))?;
            let compiled = compile(url, &own);
            out.push((
                base.to_string(),
                SearchParam {
                    code: code.to_string(),
                    url: url.to_string(),
                    kind,
                    description: text("description").unwrap_or_default().to_string(),
                    reads: compiled.as_deref().and_then(crate::fhirpath::top_level_reads),
                    compiled,
                    expression: Some(own),
                    targets: targets.clone(),
                    components: Vec::new(),
                    narrower: Vec::new(),
                },
            ));
        }
        Ok(out)
    }

    /// Makes the SearchParameter `id` define exactly `params` (none: it was deleted or is no
    /// longer active). Returns the (type, code) pairs that need an index id.
    pub fn set_custom(&self, id: &str, params: Vec<(String, SearchParam)>) -> Vec<(String, String)> {
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        let mut sources = self.custom_sources.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let mut previous: Vec<(String, &'static SearchParam)> = Vec::new();
        for (t, code) in sources.remove(id).unwrap_or_default() {
            if let Some(old) = custom.get_mut(&t).and_then(|m| m.remove(&code)) {
                previous.push((t, old));
            }
        }
        let keys: Vec<(String, String)> = params.iter().map(|(t, p)| (t.clone(), p.code.clone())).collect();
        for (t, p) in params {
            let code = p.code.clone();
            // An unchanged definition keeps its allocation, so re-saving a SearchParameter does
            // not grow memory; only new definitions are leaked.
            let same = |old: &SearchParam| {
                old.url == p.url
                    && old.kind == p.kind
                    && old.expression == p.expression
                    && old.targets == p.targets
                    && old.description == p.description
            };
            let kept =
                previous.iter().find(|(pt, old)| *pt == t && old.code == code && same(old)).map(|(_, o)| *o);
            let param: &'static SearchParam = match kept {
                Some(old) => old,
                None => Box::leak(Box::new(p)),
            };
            custom.entry(t).or_default().insert(code, param);
        }
        if !keys.is_empty() {
            sources.insert(id.to_string(), keys.clone());
        }
        keys
    }

    fn custom_owner(&self, rtype: &str, code: &str) -> Option<String> {
        let sources = self.custom_sources.read().unwrap_or_else(|e| e.into_inner());
        sources
            .iter()
            .find(|(_, keys)| keys.iter().any(|(t, c)| t == rtype && c == code))
            .map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sp(code: &str, expression: &str) -> Value {
        json!({"resourceType": "SearchParameter", "url": "http://x/sp", "name": "x", "status": "active",
            "description": "d", "code": code, "base": ["Patient"], "type": "string", "expression": expression})
    }

    #[test]
    fn custom_parameters_are_checked_and_scoped() {
        let r = Registry::new();
        let params = r.check_custom("a", &sp("nickname", "Patient.name.given")).unwrap();
        assert_eq!(r.set_custom("a", params), vec![("Patient".to_string(), "nickname".to_string())]);
        assert_eq!(r.get("Patient", "nickname").unwrap().kind, ParamType::String);
        assert!(Registry::global().get("Patient", "nickname").is_none(), "other registries unaffected");
        assert!(r.check_custom("b", &sp("nickname", "Patient.name.given")).is_err(), "taken by a");
        assert!(r.check_custom("a", &sp("nickname", "Patient.name.family")).is_ok(), "a may change it");
        assert!(r.check_custom("c", &sp("name", "Patient.name")).is_err(), "official");
        assert!(r.check_custom("c", &sp("x", "Patient.name.where(")).is_err(), "does not parse");
        r.set_custom("a", Vec::new());
        assert!(r.get("Patient", "nickname").is_none());
        let mut draft = sp("other", "Patient.name");
        draft["status"] = json!("draft");
        assert!(r.check_custom("d", &draft).unwrap().is_empty());
    }
}
