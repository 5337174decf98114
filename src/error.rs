//! The library's one error type. Every failure a client can cause is a variant here; `api::respond`
//! is the single place that turns it into an OperationOutcome and an HTTP status.

use thiserror::Error;

/// FHIR `IssueType` codes we emit (http://hl7.org/fhir/R4/valueset-issue-type.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    Invalid,
    Structure,
    Required,
    Value,
    Processing,
    NotSupported,
    NotFound,
    Deleted,
    Conflict,
    TooLarge,
    Exception,
    Duplicate,
    MultipleMatches,
    Informational,
    Login,
    Forbidden,
}

impl IssueCode {
    const ALL: [IssueCode; 16] = [
        IssueCode::Invalid,
        IssueCode::Structure,
        IssueCode::Required,
        IssueCode::Value,
        IssueCode::Processing,
        IssueCode::NotSupported,
        IssueCode::NotFound,
        IssueCode::Deleted,
        IssueCode::Conflict,
        IssueCode::TooLarge,
        IssueCode::Exception,
        IssueCode::Duplicate,
        IssueCode::MultipleMatches,
        IssueCode::Informational,
        IssueCode::Login,
        IssueCode::Forbidden,
    ];

    pub fn parse(code: &str) -> Option<IssueCode> {
        IssueCode::ALL.into_iter().find(|c| c.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::Processing => "processing",
            IssueCode::NotSupported => "not-supported",
            IssueCode::NotFound => "not-found",
            IssueCode::Deleted => "deleted",
            IssueCode::Conflict => "conflict",
            IssueCode::TooLarge => "too-large",
            IssueCode::Exception => "exception",
            IssueCode::Duplicate => "duplicate",
            IssueCode::MultipleMatches => "multiple-matches",
            IssueCode::Informational => "informational",
            IssueCode::Login => "login",
            IssueCode::Forbidden => "forbidden",
        }
    }
}

/// One problem found in a request, with the FHIRPath of the offending element when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub code: IssueCode,
    pub diagnostics: String,
    pub expression: Option<String>,
}

impl Issue {
    pub fn new(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Issue { code, diagnostics: diagnostics.into(), expression: None }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// The issue as stored with a failed background job.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code.as_str(),
            "diagnostics": self.diagnostics,
            "expression": self.expression,
        })
    }

    pub fn from_json(value: &serde_json::Value) -> Option<Issue> {
        Some(Issue {
            code: IssueCode::parse(value.get("code")?.as_str()?)?,
            diagnostics: value.get("diagnostics")?.as_str()?.to_string(),
            expression: value.get("expression").and_then(|e| e.as_str()).map(str::to_string),
        })
    }
}

#[derive(Debug, Error)]
pub enum Error {
    /// The request or resource is invalid (400); carries every issue found, not just the first.
    #[error("{}", first_diagnostics(.0))]
    Invalid(Vec<Issue>),
    #[error("unknown resource type '{0}'")]
    UnknownType(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotImplemented(String),
    /// The server cannot take this now (it is stopping): send it again later (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Store(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("internal error: {0}")]
    Internal(String),
    /// No valid access token (401); the text goes into `WWW-Authenticate` too.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token that does not allow the request (403).
    #[error("{0}")]
    Forbidden(String),
    /// A background job that failed, as its status request reports it (500).
    #[error("{}", first_diagnostics(.0))]
    JobFailed(Vec<Issue>),
}

fn first_diagnostics(issues: &[Issue]) -> String {
    issues.first().map(|i| i.diagnostics.clone()).unwrap_or_else(|| "invalid request".into())
}

impl Error {
    /// A 400 with one issue.
    pub fn invalid(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Error::Invalid(vec![Issue::new(code, diagnostics)])
    }

    /// The same error, said of entry `i` of a Bundle: messages name the entry, issue
    /// expressions are rooted at it. Database errors stay as they are (the engine retries some).
    pub fn in_entry(self, i: usize) -> Self {
        let at = format!("Bundle.entry[{i}]");
        let say = |m: String| format!("{at}: {m}");
        match self {
            Error::Invalid(issues) => Error::Invalid(
                issues
                    .into_iter()
                    .map(|mut issue| {
                        issue.expression = Some(match issue.expression.take() {
                            Some(e) => format!("{at}.resource.{e}"),
                            None => at.clone(),
                        });
                        issue.diagnostics = say(issue.diagnostics);
                        issue
                    })
                    .collect(),
            ),
            Error::UnknownType(t) => Error::NotFound(say(format!("unknown resource type '{t}'"))),
            Error::NotFound(m) => Error::NotFound(say(m)),
            Error::Gone(m) => Error::Gone(say(m)),
            Error::Conflict(m) => Error::Conflict(say(m)),
            Error::Forbidden(m) => Error::Forbidden(say(m)),
            Error::PreconditionFailed(m) => Error::PreconditionFailed(say(m)),
            Error::MethodNotAllowed(m) => Error::MethodNotAllowed(say(m)),
            Error::NotImplemented(m) => Error::NotImplemented(say(m)),
            other => other,
        }
    }

    /// A 400 with one issue located at `expression`.
    pub fn invalid_at(
        code: IssueCode,
        diagnostics: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        Error::Invalid(vec![Issue::new(code, diagnostics).at(expression)])
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::Invalid(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::UnknownType(_) | Error::NotFound(_) => 404,
            Error::Gone(_) => 410,
            Error::Conflict(_) => 409,
            Error::PreconditionFailed(_) => 412,
            Error::UnsupportedMediaType(_) => 415,
            Error::NotAcceptable(_) => 406,
            Error::PayloadTooLarge(_) => 413,
            Error::MethodNotAllowed(_) => 405,
            Error::NotImplemented(_) => 501,
            Error::Unavailable(_) => 503,
            Error::Store(_) | Error::Migrate(_) | Error::Internal(_) | Error::JobFailed(_) => 500,
        }
    }

    /// The issues to report. Internal failures are described without leaking database details.
    pub fn issues(&self) -> Vec<Issue> {
        let code = match self {
            Error::Invalid(issues) | Error::JobFailed(issues) => return issues.clone(),
            Error::UnknownType(_) | Error::NotImplemented(_) | Error::MethodNotAllowed(_) => {
                IssueCode::NotSupported
            }
            Error::UnsupportedMediaType(_) | Error::NotAcceptable(_) => IssueCode::NotSupported,
            Error::NotFound(_) => IssueCode::NotFound,
            Error::Unauthorized(_) => IssueCode::Login,
            Error::Forbidden(_) => IssueCode::Forbidden,
            Error::Gone(_) => IssueCode::Deleted,
            Error::Conflict(_) | Error::PreconditionFailed(_) => IssueCode::Conflict,
            Error::PayloadTooLarge(_) => IssueCode::TooLarge,
            Error::Store(_) | Error::Migrate(_) => {
                // Database messages can name tables and values: they go to the log, not the client.
                return vec![Issue::new(IssueCode::Exception, "internal database error")];
            }
            Error::Internal(_) | Error::Unavailable(_) => IssueCode::Exception,
        };
        vec![Issue::new(code, self.to_string())]
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
