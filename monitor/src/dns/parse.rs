//! A DNS answer to what it binds: each address with the names that led to
//! it (the query name, then every CNAME of the chain) and how long the
//! binding holds (the smallest TTL along the chain).
//!
//! Decoding is hickory-proto's, record by record, so that a message cut
//! short (the kernel copies at most `DNS_PAYLOAD_MAX` bytes) still yields
//! the answers before the cut: the answer section comes first.

use std::{collections::HashMap, net::IpAddr};

use hickory_proto::{
    op::{Header, MessageType, OpCode, Query, ResponseCode},
    rr::{RData, Record},
    serialize::binary::{BinDecodable, BinDecoder},
};

/// Longest CNAME chain followed; real chains have 2 or 3 links.
const MAX_CHAIN: usize = 16;

/// One address and the names it was resolved from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub addr: IpAddr,
    /// The query name first, then each CNAME target down to the owner of
    /// the address record; lower case, without the trailing dot.
    pub names: Vec<String>,
    /// Seconds: the smallest TTL of the address record and the CNAMEs above it.
    pub ttl: u32,
}

/// What one DNS message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A successful answer (possibly with no addresses: a CNAME only, or an
    /// empty NOERROR for the other family).
    Answer {
        bindings: Vec<Binding>,
        /// The message ended (cut by the capture) before its answer section did.
        cut: bool,
    },
    /// A response with an error code (NXDOMAIN, SERVFAIL, ...): binds nothing.
    Negative(ResponseCode),
    /// Not a standard query response: a query sent from port 53, NOTIFY, UPDATE...
    NotAnswer,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("DNS header or question does not decode: {0}")]
    Malformed(String),
}

/// Decodes `payload`, the bytes of one DNS message (without the TCP length prefix).
pub fn parse(payload: &[u8]) -> Result<Parsed, ParseError> {
    let mut d = BinDecoder::new(payload);
    let header = Header::read(&mut d).map_err(|e| ParseError::Malformed(e.to_string()))?;
    let meta = &header.metadata;
    if meta.message_type != MessageType::Response || meta.op_code != OpCode::Query {
        return Ok(Parsed::NotAnswer);
    }
    if meta.response_code != ResponseCode::NoError {
        return Ok(Parsed::Negative(meta.response_code));
    }
    let mut queries = Vec::with_capacity(header.counts.queries as usize);
    for _ in 0..header.counts.queries {
        queries.push(Query::read(&mut d).map_err(|e| ParseError::Malformed(e.to_string()))?);
    }
    let mut answers = Vec::with_capacity(header.counts.answers as usize);
    let mut cut = false;
    for _ in 0..header.counts.answers {
        match Record::<RData>::read(&mut d) {
            Ok(r) => answers.push(r),
            Err(_) => {
                // Past the end of a cut copy, or garbage: keep what decoded.
                cut = true;
                break;
            }
        }
    }
    let names: Vec<String> = queries.iter().map(|q| norm(&q.name().to_ascii())).collect();
    Ok(Parsed::Answer { bindings: bind(&names, &answers), cut })
}

/// Lower case, no trailing dot: how names are compared everywhere.
pub fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Follows each query name through the CNAMEs of the answer section to its
/// address records. Records that no query name leads to bind nothing: a
/// server has no business answering what was not asked.
fn bind(queries: &[String], answers: &[Record]) -> Vec<Binding> {
    let mut cname: HashMap<String, (String, u32)> = HashMap::new();
    let mut addrs: HashMap<String, Vec<(IpAddr, u32)>> = HashMap::new();
    for r in answers {
        let owner = norm(&r.name.to_ascii());
        match &r.data {
            RData::A(a) => addrs.entry(owner).or_default().push((IpAddr::V4(a.0), r.ttl)),
            RData::AAAA(a) => addrs.entry(owner).or_default().push((IpAddr::V6(a.0), r.ttl)),
            RData::CNAME(c) => {
                cname.insert(owner, (norm(&c.0.to_ascii()), r.ttl));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for q in queries {
        let mut chain = vec![q.clone()];
        let mut ttl = u32::MAX;
        let mut cur = q.clone();
        for _ in 0..MAX_CHAIN {
            if let Some(list) = addrs.get(&cur) {
                for &(addr, t) in list {
                    out.push(Binding { addr, names: chain.clone(), ttl: ttl.min(t) });
                }
            }
            match cname.get(&cur) {
                Some((target, t)) if !chain.contains(target) => {
                    ttl = ttl.min(*t);
                    chain.push(target.clone());
                    cur = target.clone();
                }
                _ => break,
            }
        }
    }
    out
}
