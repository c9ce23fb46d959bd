//! CIDR lists loaded from JSON files, such as Microsoft's Azure service
//! tags, selected with an RFC 9535 JSONPath.

use std::path::Path;

use ipnet::IpNet;
use serde_json_path::JsonPath;

/// Which part of a `prefixes:` entry is at fault, so the error points there.
#[derive(Debug)]
pub enum PrefixError {
    File(String),
    Path(String),
}

/// Reads `file` (relative to `dir`) and returns the CIDRs that `path`
/// selects. A selected array of strings is flattened, so
/// `...addressPrefixes` and `...addressPrefixes[*]` mean the same.
pub fn load(dir: &Path, file: &str, path: &str) -> Result<Vec<IpNet>, PrefixError> {
    let full = dir.join(file);
    let text = std::fs::read_to_string(&full).map_err(|e| {
        PrefixError::File(format!(
            "cannot read prefixes file {} ({e}); paths are relative to the matrix file's folder",
            full.display()
        ))
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        PrefixError::File(format!("{}:{}:{}: not valid JSON: {e}", full.display(), e.line(), e.column()))
    })?;
    let jp = JsonPath::parse(path).map_err(|e| {
        PrefixError::Path(format!(
            "bad JSONPath at character {}: {}; e.g. $.values[?@.name=='AzureActiveDirectory'].properties.addressPrefixes",
            e.position() + 1,
            e.message()
        ))
    })?;
    let mut nets = Vec::new();
    let mut strings = Vec::new();
    for v in jp.query(&json).all() {
        match v {
            serde_json::Value::String(s) => strings.push(s.as_str()),
            serde_json::Value::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    match item.as_str() {
                        Some(s) => strings.push(s),
                        None => {
                            return Err(PrefixError::Path(format!(
                                "{path} selects an array whose item {i} is {item}, not a CIDR string"
                            )))
                        }
                    }
                }
            }
            other => {
                return Err(PrefixError::Path(format!(
                    "{path} selects {other}, not CIDR strings; point it at an array of CIDRs"
                )))
            }
        }
    }
    if strings.is_empty() {
        return Err(PrefixError::Path(format!(
            "{path} selects nothing in {}; check the names in the path against the file",
            full.display()
        )));
    }
    for s in strings {
        let net = super::expand::parse_net(s)
            .map_err(|e| PrefixError::Path(format!("{path} selects {s:?} from {}: {e}", full.display())))?;
        nets.push(net);
    }
    Ok(nets)
}
