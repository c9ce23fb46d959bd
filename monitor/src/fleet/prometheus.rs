//! A small client of Prometheus's HTTP API: instant queries
//! (`GET /api/v1/query`) whose results are vectors, at one evaluation time,
//! with errors that say which Prometheus, which query, and what to check.

use std::{collections::BTreeMap, time::Duration};

use reqwest::{redirect, StatusCode, Url};
use serde::Deserialize;

use crate::live::webhook::install_tls_provider;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("`{url}` is not a Prometheus URL: {reason}; give its base URL, e.g. http://prometheus:9090")]
    NotAUrl { url: String, reason: String },
    #[error("`{0}`: a Prometheus URL is http:// or https://, e.g. http://prometheus:9090")]
    Scheme(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(
        "cannot reach Prometheus at {url}: {reason}; check the URL (scheme, host, port), that Prometheus \
         runs and listens there (its --web.listen-address), and that no firewall or proxy is in the way"
    )]
    Unreachable { url: String, reason: String },
    #[error("Prometheus at {url} rejected the query ({status}): {error_type}: {error}\n  query: {query}")]
    Query { url: String, status: u16, error_type: String, error: String, query: String },
    #[error(
        "{url}: HTTP {status} for {path} with no Prometheus API answer ({snippet}); is this Prometheus's \
         base URL (with its --web.route-prefix, if any)?\n  query: {query}"
    )]
    NotPrometheus { url: String, status: u16, path: String, snippet: String, query: String },
    #[error(
        "Prometheus at {url} answered the query with a {got} result, not an instant vector\n  query: {query}"
    )]
    NotAVector { url: String, got: String, query: String },
}

/// One series of an instant vector: its labels and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, empty when the series has none (as PromQL sees it).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A Prometheus server's API.
#[derive(Clone, Debug)]
pub struct Prometheus {
    client: reqwest::Client,
    /// The base URL, ending in `/` so that `api/v1/query` joins below it.
    base: Url,
    /// The base URL without credentials, for messages.
    shown: String,
}

impl Prometheus {
    /// A client of the Prometheus at `url` (its base: `http://host:9090`, or
    /// with a path when it runs under a `--web.route-prefix`); each request
    /// gives up after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Prometheus, PrometheusError> {
        let mut base = Url::parse(url.trim())
            .map_err(|e| PrometheusError::NotAUrl { url: url.to_string(), reason: e.to_string() })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(PrometheusError::Scheme(url.to_string()));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(PrometheusError::NotAUrl { url: url.to_string(), reason: "no host".into() });
        }
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let mut shown = base.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let shown = shown.as_str().trim_end_matches('/').to_string();
        install_tls_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(redirect::Policy::limited(3))
            .build()
            .map_err(|e| PrometheusError::Client(error_chain(&e)))?;
        Ok(Prometheus { client, base, shown })
    }

    /// The base URL as messages show it (without credentials).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Evaluates `query` at `time` (Unix seconds): the instant vector's series.
    pub async fn query(&self, query: &str, time: f64) -> Result<Vec<Sample>, PrometheusError> {
        let mut url = self.base.join("api/v1/query").expect("a relative path joins");
        url.query_pairs_mut().append_pair("query", query).append_pair("time", &format!("{time:.3}"));
        // reqwest turns the URL's user and password into basic authentication.
        let req = self.client.get(url.clone());
        let unreachable = |e: reqwest::Error| PrometheusError::Unreachable {
            url: self.shown.clone(),
            // The URL is in the message already (and the query is long).
            reason: error_chain(&e.without_url()),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(unreachable)?;
        let answer: Answer = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(_) => {
                return Err(PrometheusError::NotPrometheus {
                    url: self.shown.clone(),
                    status: status.as_u16(),
                    path: url.path().to_string(),
                    snippet: snippet(&body),
                    query: query.to_string(),
                })
            }
        };
        if answer.status != "success" || !status.is_success() {
            return Err(PrometheusError::Query {
                url: self.shown.clone(),
                status: status.as_u16(),
                error_type: answer.error_type.unwrap_or_else(|| status_word(status)),
                error: answer.error.unwrap_or_else(|| "(no error message)".into()),
                query: query.to_string(),
            });
        }
        let data = answer.data.unwrap_or_default();
        if data.result_type != "vector" {
            return Err(PrometheusError::NotAVector {
                url: self.shown.clone(),
                got: data.result_type,
                query: query.to_string(),
            });
        }
        Ok(data
            .result
            .into_iter()
            .filter_map(|s| {
                let value = s.value.1.parse::<f64>().ok()?;
                Some(Sample { labels: s.metric, value })
            })
            .collect())
    }
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Default, Deserialize)]
struct Data {
    #[serde(rename = "resultType", default)]
    result_type: String,
    #[serde(default)]
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[unix time, "value"]`.
    value: (f64, String),
}

fn status_word(s: StatusCode) -> String {
    s.canonical_reason().unwrap_or("error").to_string()
}

/// The start of a body that is not the API's JSON, on one line.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.is_empty() {
        return "empty body".into();
    }
    match one.char_indices().nth(80) {
        Some((i, _)) => format!("{:?}...", &one[..i]),
        None => format!("{one:?}"),
    }
}

/// reqwest's top error says "error sending request"; the causes say why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_credentials() {
        let p = Prometheus::new("http://user:secret@prom:9090/prefix", Duration::from_secs(1)).unwrap();
        assert_eq!(p.url(), "http://prom:9090/prefix");
        assert_eq!(
            p.base.join("api/v1/query").unwrap().as_str(),
            "http://user:secret@prom:9090/prefix/api/v1/query"
        );
        let p = Prometheus::new("http://prom:9090", Duration::from_secs(1)).unwrap();
        assert_eq!(p.url(), "http://prom:9090");
        assert!(matches!(
            Prometheus::new("ftp://prom", Duration::from_secs(1)),
            Err(PrometheusError::Scheme(_))
        ));
        let e = Prometheus::new("prom.example", Duration::from_secs(1)).unwrap_err().to_string();
        assert!(
            e.contains("`prom.example` is not a Prometheus URL") && e.contains("e.g. http://prometheus:9090"),
            "{e}"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_shown_short_on_one_line() {
        assert_eq!(snippet(b""), "empty body");
        assert_eq!(snippet(b"404 page\n not found\n"), "\"404 page not found\"");
        assert_eq!(snippet("x".repeat(200).as_bytes()), format!("{:?}...", "x".repeat(80)));
    }
}
