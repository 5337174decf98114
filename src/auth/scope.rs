//! SMART scopes (hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), v1 and v2, parsed
//! into one [`Grant`]: what a token lets its bearer do to which resource types, in which
//! context (one patient's compartment, the user's reach, or the whole system).

use std::fmt;

/// Whose data a rule reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Context {
    /// `patient/`: the compartment of the token's patient.
    Patient,
    /// `user/`: whatever the user may see (confined further by policy).
    User,
    /// `system/`: a backend service, no user.
    System,
}

/// The SMART v2 permissions: create, read, update, delete, search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    pub c: bool,
    pub r: bool,
    pub u: bool,
    pub d: bool,
    pub s: bool,
}

impl Perms {
    pub const ALL: Perms = Perms { c: true, r: true, u: true, d: true, s: true };

    /// v2 `cruds` letters, in that order, each at most once; v1 `read`, `write`, `*`.
    fn parse(text: &str) -> Option<Perms> {
        match text {
            "read" => return Some(Perms { r: true, s: true, ..Perms::default() }),
            "write" => return Some(Perms { c: true, u: true, d: true, ..Perms::default() }),
            "*" => return Some(Perms::ALL),
            "" => return None,
            _ => {}
        }
        let mut p = Perms::default();
        let mut last = 0;
        for ch in text.chars() {
            let (rank, flag) = match ch {
                'c' => (1, &mut p.c),
                'r' => (2, &mut p.r),
                'u' => (3, &mut p.u),
                'd' => (4, &mut p.d),
                's' => (5, &mut p.s),
                _ => return None,
            };
            // The letters must come in cruds order (scopes-and-launch-context.html#scopes-for-requesting-fhir-resources).
            if rank <= last {
                return None;
            }
            last = rank;
            *flag = true;
        }
        Some(p)
    }

    /// Whether every permission of `other` is also in `self`.
    pub fn includes(&self, other: &Perms) -> bool {
        (self.c || !other.c)
            && (self.r || !other.r)
            && (self.u || !other.u)
            && (self.d || !other.d)
            && (self.s || !other.s)
    }

    /// The v2 letters.
    pub fn letters(&self) -> String {
        [(self.c, 'c'), (self.r, 'r'), (self.u, 'u'), (self.d, 'd'), (self.s, 's')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, ch)| *ch)
            .collect()
    }

    pub fn has(&self, i: Interaction) -> bool {
        match i {
            Interaction::Create => self.c,
            Interaction::Read => self.r,
            Interaction::Update => self.u,
            Interaction::Delete => self.d,
            Interaction::Search => self.s,
        }
    }
}

/// What a request does to a resource type, in SMART's terms. History and vread are reads;
/// a conditional write also searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub context: Context,
    /// `None` for `*`.
    pub rtype: Option<String>,
    pub perms: Perms,
    /// A v2 query restriction (`patient/Observation.rs?category=laboratory`): the resources the
    /// rule reaches must match it.
    pub query: Option<String>,
}

impl Rule {
    /// The rule as a v2 scope.
    pub fn text(&self) -> String {
        let context = match self.context {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        };
        let query = self.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
        format!("{context}/{}.{}{query}", self.rtype.as_deref().unwrap_or("*"), self.perms.letters())
    }
}

/// Everything a token grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub rules: Vec<Rule>,
    /// The launch context patient, for `patient/` rules.
    pub patient: Option<String>,
    /// `fhirUser`, e.g. `Practitioner/123`.
    pub fhir_user: Option<String>,
    /// Scopes that are not about resources (`openid`, `launch/patient`, `offline_access`, …).
    pub other: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scopes that are not resource scopes but are understood.
pub const KNOWN_OTHER: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

impl Grant {
    /// Parses a space-separated `scope` string. Unknown non-resource scopes are kept in `other`
    /// (a server may ignore scopes it does not know); a malformed resource scope is an error.
    pub fn parse(scope: &str) -> Result<Grant, ScopeError> {
        let mut grant = Grant::default();
        for s in scope.split_ascii_whitespace() {
            match parse_rule(s)? {
                Some(rule) => grant.rules.push(rule),
                None => grant.other.push(s.to_string()),
            }
        }
        Ok(grant)
    }

    /// The rules that let `interaction` on `rtype` happen, in any context.
    pub fn rules_for(&self, rtype: &str, interaction: Interaction) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .filter(move |r| r.rtype.as_deref().is_none_or(|t| t == rtype) && r.perms.has(interaction))
    }

    pub fn allows(&self, rtype: &str, interaction: Interaction) -> bool {
        self.rules_for(rtype, interaction).next().is_some()
    }

    /// Whether every scope of `requested` falls within this grant (the scopes a client was
    /// registered with): a resource scope needs a rule of the same context whose type and
    /// permissions include it; another scope must be listed as such.
    pub fn covers(&self, requested: &Grant) -> Result<(), String> {
        for want in &requested.rules {
            let ok = self.rules.iter().any(|have| {
                have.context == want.context
                    && (have.rtype.is_none() || have.rtype == want.rtype)
                    && have.perms.includes(&want.perms)
                    && (have.query.is_none() || have.query == want.query)
            });
            if !ok {
                return Err(format!("the client may not be granted '{}'", want.text()));
            }
        }
        for want in &requested.other {
            if !self.has_other(want) {
                return Err(format!("the client may not be granted '{want}'"));
            }
        }
        Ok(())
    }

    pub fn has_other(&self, scope: &str) -> bool {
        self.other.iter().any(|s| s == scope)
    }

    /// Whether the grant names a scope of a kind nobody recognizes (for warnings).
    pub fn unknown_other(&self) -> impl Iterator<Item = &str> {
        self.other.iter().map(String::as_str).filter(|s| !KNOWN_OTHER.contains(s) && !s.starts_with("launch"))
    }
}

/// `context/Type.perms[?query]`, or `None` when `s` is not a resource scope at all.
fn parse_rule(s: &str) -> Result<Option<Rule>, ScopeError> {
    let bad = |why: &str| ScopeError(format!("scope '{s}': {why}"));
    let Some((context, rest)) = s.split_once('/') else { return Ok(None) };
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return Ok(None),
    };
    let (resource, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let Some((rtype, perms)) = resource.split_once('.') else {
        // `launch/patient` and the like have no '.'; only the three contexts above get here.
        return Err(bad("expected Type.permissions"));
    };
    let rtype = match rtype {
        "*" => None,
        t if crate::resource::is_resource_type(t) => Some(t.to_string()),
        t => return Err(bad(&format!("unknown resource type '{t}'"))),
    };
    let perms = Perms::parse(perms)
        .ok_or_else(|| bad("permissions must be read, write, * or letters of cruds in order"))?;
    if query.is_some() && !perms.c && !perms.r && !perms.u && !perms.d && !perms.s {
        return Err(bad("a query needs permissions"));
    }
    Ok(Some(Rule { context, rtype, perms, query: query.filter(|q| !q.is_empty()).map(str::to_string) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_scopes_mean_the_same() {
        let v1 = Grant::parse("patient/Observation.read").unwrap();
        let v2 = Grant::parse("patient/Observation.rs").unwrap();
        assert_eq!(v1.rules[0].perms, v2.rules[0].perms);
        assert!(v1.allows("Observation", Interaction::Search));
        assert!(!v1.allows("Observation", Interaction::Create));
        assert!(!v1.allows("Patient", Interaction::Read));
        let w = Grant::parse("user/*.write").unwrap();
        assert!(w.allows("Task", Interaction::Delete) && !w.allows("Task", Interaction::Read));
        let all = Grant::parse("system/*.*").unwrap();
        assert_eq!(all.rules[0].perms, Perms::ALL);
        assert_eq!(all.rules[0].context, Context::System);
    }

    #[test]
    fn v2_queries_and_other_scopes() {
        let g = Grant::parse(
            "launch/patient openid fhirUser offline_access patient/Observation.rs?category=laboratory",
        )
        .unwrap();
        assert_eq!(g.rules[0].query.as_deref(), Some("category=laboratory"));
        assert!(g.has_other("launch/patient") && g.has_other("offline_access"));
        assert_eq!(g.unknown_other().count(), 0);
        assert_eq!(
            Grant::parse("custom-thing").unwrap().unknown_other().collect::<Vec<_>>(),
            ["custom-thing"]
        );
    }

    #[test]
    fn registered_scopes_cover_narrower_requests() {
        let allowed = Grant::parse("patient/*.cruds user/Observation.rs launch/patient openid").unwrap();
        let ok = |s: &str| allowed.covers(&Grant::parse(s).unwrap());
        assert!(ok("patient/Observation.read patient/Task.cu launch/patient").is_ok());
        assert!(ok("user/Observation.rs?category=laboratory").is_ok());
        assert_eq!(
            ok("user/Observation.c").unwrap_err(),
            "the client may not be granted 'user/Observation.c'"
        );
        assert!(ok("user/Task.rs").is_err());
        assert!(ok("system/*.rs").is_err());
        assert!(ok("offline_access").is_err());
        let narrow = Grant::parse("patient/Observation.rs?category=vital-signs").unwrap();
        assert!(narrow.covers(&Grant::parse("patient/Observation.rs").unwrap()).is_err());
    }

    #[test]
    fn malformed_resource_scopes_are_refused() {
        for bad in [
            "patient/Observation.sr",
            "patient/Observation.rr",
            "user/Nope.read",
            "system/Task",
            "patient/Task.x",
        ] {
            assert!(Grant::parse(bad).is_err(), "{bad}");
        }
        assert!(Grant::parse("").unwrap().rules.is_empty());
    }
}
