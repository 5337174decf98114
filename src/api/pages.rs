//! The HTML pages of `/auth/authorize`: login, patient picker, consent, and the error page for
//! requests that cannot be sent back to the client. Plain forms, no script; every echoed value
//! is escaped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{Context, Grant};

/// Escapes text for HTML element content and double-quoted attributes.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// No script, no framing (clickjacking on the consent button), nothing loaded from elsewhere.
/// `form-action` is left out on purpose: browsers apply it to the redirect that follows the
/// consent form, which goes to the client's redirect URI.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{} – Hearth</title></head>\
         <body><h1>{}</h1>\n{body}\n</body></html>\n",
        html_escape(title),
        html_escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// A request that cannot be answered by redirect (unknown client, redirect URI not registered).
pub fn error(status: StatusCode, message: &str) -> Response {
    page(status, "Authorization request refused", &format!("<p>{}</p>", html_escape(message)))
}

fn hidden(pending: &str, step: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"pending\" value=\"{}\"><input type=\"hidden\" name=\"step\" value=\"{}\">",
        html_escape(pending),
        html_escape(step)
    )
}

pub fn login(status: StatusCode, pending: &str, client_id: &str, message: Option<&str>) -> Response {
    let message = message.map(|m| format!("<p role=\"alert\"><strong>{}</strong></p>", html_escape(m)));
    let body = format!(
        "<p>Sign in to let <strong>{}</strong> use your FHIR data.</p>{}\n\
         <form method=\"post\" action=\"authorize\">{}\n\
         <p><label>User name <input name=\"username\" autocomplete=\"username\" required></label></p>\n\
         <p><label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label></p>\n\
         <p><label>One-time code (if your account has one) <input name=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\"></label></p>\n\
         <p><button type=\"submit\">Sign in</button></p></form>",
        html_escape(client_id),
        message.unwrap_or_default(),
        hidden(pending, "login"),
    );
    page(status, "Sign in", &body)
}

/// One row of the patient picker: id, name, birth date.
pub type PatientRow = (String, String, String);

pub fn picker(pending: &str, name: &str, patients: &[PatientRow]) -> Response {
    let rows: String = patients
        .iter()
        .map(|(id, n, birth)| {
            format!(
                "<li><label><input type=\"radio\" name=\"patient\" value=\"{}\" required> {} ({}) – id {}</label></li>\n",
                html_escape(id),
                html_escape(n),
                html_escape(birth),
                html_escape(id)
            )
        })
        .collect();
    let list = if patients.is_empty() {
        "<p>No patients found.</p>".to_string()
    } else {
        format!(
            "<form method=\"post\" action=\"authorize\">{}<ul>\n{rows}</ul><p><button type=\"submit\">Select patient</button></p></form>",
            hidden(pending, "patient")
        )
    };
    let body = format!(
        "<form method=\"post\" action=\"authorize\">{}<p><label>Name <input name=\"name\" value=\"{}\"></label> \
         <button type=\"submit\">Search</button></p></form>\n{list}",
        hidden(pending, "patient"),
        html_escape(name)
    );
    page(StatusCode::OK, "Choose a patient", &body)
}

pub fn consent(pending: &str, client_id: &str, scope: &str, patient: Option<&str>) -> Response {
    let items: String = scope
        .split_ascii_whitespace()
        .map(|s| format!("<li>{} <code>{}</code></li>\n", html_escape(&describe(s)), html_escape(s)))
        .collect();
    let patient = patient
        .map(|p| format!("<p>Patient: <strong>Patient/{}</strong></p>", html_escape(p)))
        .unwrap_or_default();
    let body = format!(
        "<p><strong>{}</strong> asks for:</p><ul>\n{items}</ul>{patient}\n\
         <form method=\"post\" action=\"authorize\">{}\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        html_escape(client_id),
        hidden(pending, "consent"),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

/// A scope in plain words.
fn describe(scope: &str) -> String {
    match scope {
        "openid" => return "Know who you are".into(),
        "fhirUser" | "profile" => return "See your user record (who you are in the FHIR server)".into(),
        "launch" => return "Open in the context of the current EHR session".into(),
        "launch/patient" => return "Know which patient is selected".into(),
        "launch/encounter" => return "Know which encounter is selected".into(),
        "offline_access" => return "Keep access after you sign out, until you revoke it".into(),
        "online_access" => return "Keep access while you are signed in".into(),
        _ => {}
    }
    let Ok(grant) = Grant::parse(scope) else { return "Unrecognized permission".into() };
    let Some(rule) = grant.rules.first() else { return "Other permission".into() };
    let mut verbs = Vec::new();
    for (on, verb) in [
        (rule.perms.c, "create"),
        (rule.perms.r, "read"),
        (rule.perms.u, "update"),
        (rule.perms.d, "delete"),
        (rule.perms.s, "search"),
    ] {
        if on {
            verbs.push(verb);
        }
    }
    let what = rule.rtype.as_deref().map_or("all resources".to_string(), |t| format!("{t} resources"));
    let whose = match rule.context {
        Context::Patient => "of the selected patient",
        Context::User => "that you can access",
        Context::System => "in the whole system",
    };
    let query = rule.query.as_deref().map(|q| format!(" matching {q}")).unwrap_or_default();
    format!("{} {what} {whose}{query}", capitalize(&verbs.join(", ")))
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_plain_words() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            describe("patient/Observation.rs"),
            "Read, search Observation resources of the selected patient"
        );
        assert_eq!(
            describe("user/*.cruds"),
            "Create, read, update, delete, search all resources that you can access"
        );
        assert_eq!(describe("launch/patient"), "Know which patient is selected");
    }
}
