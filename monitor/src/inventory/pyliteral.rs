//! Python's `ast.literal_eval` for INI inventory values. Ansible passes every
//! INI value through it (host-line and `[group:vars]` alike), so `port=22` is
//! the number 22, `flag=True` a boolean, `x="a b"` a string, `l=[1,'a']` a
//! list, and anything that is not a Python literal (`10.0.1.10`, `web01`)
//! stays the text it was. Tuples and sets become lists, as in Ansible.
//!
//! Not reproduced: complex numbers and `\N{...}` escapes; such values are
//! kept as written (Ansible would turn a complex into its `str()`).

use serde_json::{Map, Number, Value};

/// The value of `text` as a Python literal, or `None` when Python would not
/// read it as one (the caller then keeps the text as a string).
pub(crate) fn literal_eval(text: &str) -> Option<Value> {
    let mut p = Parser { chars: text.trim_start_matches([' ', '\t']).chars().collect(), pos: 0 };
    let first = p.value()?;
    // A bare `1, 2` is a tuple in Python.
    let value = if p.eat(',') {
        let mut items = vec![first];
        p.items(None, &mut items)?;
        Value::Array(items)
    } else {
        first
    };
    p.skip_blank();
    (p.pos == p.chars.len()).then_some(value)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    /// Whitespace and `#` comments, which Python's tokenizer allows anywhere.
    fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' || c == '\x0c' {
                self.pos += 1;
            } else if c == '#' {
                self.pos = self.chars.len();
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_blank();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Comma-separated values up to `close` (or the end for a bare tuple);
    /// the opening bracket and, for bare tuples, the first comma are consumed.
    fn items(&mut self, close: Option<char>, out: &mut Vec<Value>) -> Option<()> {
        loop {
            self.skip_blank();
            match (self.peek(), close) {
                (Some(c), Some(close)) if c == close => {
                    self.pos += 1;
                    return Some(());
                }
                (None, None) => return Some(()),
                _ => {}
            }
            out.push(self.value()?);
            if !self.eat(',') {
                return match close {
                    Some(close) => self.eat(close).then_some(()),
                    None => Some(()),
                };
            }
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.skip_blank();
        let c = self.peek()?;
        match c {
            '[' => {
                self.pos += 1;
                let mut items = Vec::new();
                self.items(Some(']'), &mut items)?;
                Some(Value::Array(items))
            }
            '(' => {
                self.pos += 1;
                if self.eat(')') {
                    return Some(Value::Array(Vec::new()));
                }
                let first = self.value()?;
                if self.eat(')') {
                    return Some(first); // just parentheses
                }
                if !self.eat(',') {
                    return None;
                }
                let mut items = vec![first];
                self.items(Some(')'), &mut items)?;
                Some(Value::Array(items))
            }
            '{' => self.dict_or_set(),
            '+' | '-' => {
                self.pos += 1;
                self.skip_blank();
                // Only a number may follow a sign (`-True` is not a literal).
                let n = self.number()?;
                Some(if c == '-' { negate(n)? } else { n })
            }
            '0'..='9' => self.number(),
            '.' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(),
            '.' if self.peek_at(1) == Some('.') && self.peek_at(2) == Some('.') => {
                self.pos += 3;
                Some(Value::String("...".into()))
            }
            c if c == '_' || c.is_alphabetic() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c == '_' || c.is_alphanumeric()) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                if matches!(self.peek(), Some('\'' | '"')) {
                    self.pos = start;
                    return self.strings();
                }
                match word.as_str() {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    // set() is the only call literal_eval accepts.
                    "set" if self.eat('(') && self.eat(')') => Some(Value::Array(Vec::new())),
                    _ => None,
                }
            }
            '\'' | '"' => self.strings(),
            _ => None,
        }
    }

    fn dict_or_set(&mut self) -> Option<Value> {
        self.pos += 1; // '{'
        if self.eat('}') {
            return Some(Value::Object(Map::new()));
        }
        let first = self.value()?;
        if !self.eat(':') {
            let mut items = vec![first];
            if self.eat(',') {
                self.items(Some('}'), &mut items)?;
            } else if !self.eat('}') {
                return None;
            }
            return Some(Value::Array(items));
        }
        let mut map = Map::new();
        let mut key = first;
        loop {
            let value = self.value()?;
            map.insert(json_key(&key)?, value);
            if !self.eat(',') {
                return self.eat('}').then_some(Value::Object(map));
            }
            if self.eat('}') {
                return Some(Value::Object(map));
            }
            key = self.value()?;
            if !self.eat(':') {
                return None;
            }
        }
    }

    /// One or more adjacent string literals, concatenated as Python does.
    fn strings(&mut self) -> Option<Value> {
        let mut out = String::new();
        let mut kind: Option<bool> = None; // Some(true) = bytes
        loop {
            self.skip_blank();
            let start = self.pos;
            let mut raw = false;
            let mut bytes = false;
            while let Some(c) = self.peek().filter(|c| c.is_ascii_alphabetic()) {
                match c.to_ascii_lowercase() {
                    'r' if !raw => raw = true,
                    'b' if !bytes => bytes = true,
                    'u' if !raw && !bytes && self.pos == start => {}
                    _ => return None, // f-strings and unknown prefixes
                }
                self.pos += 1;
            }
            let Some(q @ ('\'' | '"')) = self.peek() else {
                if self.pos == start && kind.is_some() {
                    return Some(Value::String(out));
                }
                return None;
            };
            if *kind.get_or_insert(bytes) != bytes {
                return None; // Python refuses to join bytes and str
            }
            let triple = self.peek_at(1) == Some(q) && self.peek_at(2) == Some(q);
            self.pos += if triple { 3 } else { 1 };
            loop {
                let c = self.peek()?;
                if c == q && (!triple || (self.peek_at(1) == Some(q) && self.peek_at(2) == Some(q))) {
                    self.pos += if triple { 3 } else { 1 };
                    break;
                }
                if c == '\n' && !triple {
                    return None;
                }
                self.pos += 1;
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                let e = self.peek()?;
                self.pos += 1;
                if raw {
                    out.push('\\');
                    out.push(e);
                    continue;
                }
                match e {
                    '\n' => {}
                    '\\' | '\'' | '"' => out.push(e),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    '0'..='7' => {
                        let mut v = e.to_digit(8)?;
                        for _ in 0..2 {
                            match self.peek().and_then(|d| d.to_digit(8)) {
                                Some(d) => {
                                    v = v * 8 + d;
                                    self.pos += 1;
                                }
                                None => break,
                            }
                        }
                        out.push(char::from_u32(v)?);
                    }
                    'x' => out.push(self.hex_escape(2)?),
                    'u' if !bytes => out.push(self.hex_escape(4)?),
                    'U' if !bytes => out.push(self.hex_escape(8)?),
                    'N' if !bytes => return None,
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
        }
    }

    fn hex_escape(&mut self, digits: usize) -> Option<char> {
        let text: String = self.chars.get(self.pos..self.pos + digits)?.iter().collect();
        let v = u32::from_str_radix(&text, 16).ok()?;
        self.pos += digits;
        char::from_u32(v)
    }

    /// An unsigned int or float literal, with Python's underscore rules.
    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        let word_end = {
            let mut i = self.pos;
            while let Some(&c) = self.chars.get(i) {
                let exp_sign = (c == '+' || c == '-')
                    && i > start
                    && matches!(self.chars[i - 1], 'e' | 'E')
                    && !self.chars[start..i].iter().any(|c| matches!(c, 'x' | 'X'));
                if c.is_alphanumeric() || c == '_' || c == '.' || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            i
        };
        let word: String = self.chars[start..word_end].iter().collect();
        self.pos = word_end;
        parse_number(&word)
    }
}

/// Digits with single underscores between them, as Python allows.
fn digits_ok(s: &str, radix: u32) -> bool {
    !s.is_empty()
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
        && s.chars().all(|c| c == '_' || c.is_digit(radix))
}

fn parse_number(word: &str) -> Option<Value> {
    let lower = word.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let rest = rest.strip_prefix('_').unwrap_or(rest);
            if !digits_ok(rest, radix) {
                return None;
            }
            return int_value(&rest.replace('_', ""), radix);
        }
    }
    if lower.ends_with('j') {
        return None; // complex: kept as written
    }
    if lower.contains(['.', 'e']) {
        let (mantissa, exponent) = match lower.split_once('e') {
            Some((m, e)) => (m, Some(e)),
            None => (lower.as_str(), None),
        };
        let (int_part, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (mantissa, None),
        };
        let int_ok = int_part.is_empty() || digits_ok(int_part, 10);
        let frac_ok = frac.is_none_or(|f| f.is_empty() || digits_ok(f, 10));
        let has_digits = !int_part.is_empty() || frac.is_some_and(|f| !f.is_empty());
        let exp_ok = exponent.is_none_or(|e| {
            digits_ok(e.trim_start_matches(['+', '-']), 10) && e.matches(['+', '-']).count() <= 1
        });
        if !(int_ok && frac_ok && has_digits && exp_ok) {
            return None;
        }
        let f: f64 = lower.replace('_', "").parse().ok()?;
        return f.is_finite().then(|| Number::from_f64(f).map(Value::Number))?;
    }
    if !digits_ok(&lower, 10) {
        return None;
    }
    let plain = lower.replace('_', "");
    // Python 3 rejects leading zeros except in zero itself (`0777` is a SyntaxError).
    if plain.len() > 1 && plain.starts_with('0') && plain.chars().any(|c| c != '0') {
        return None;
    }
    int_value(&plain, 10)
}

fn int_value(digits: &str, radix: u32) -> Option<Value> {
    if let Ok(v) = i64::from_str_radix(digits, radix) {
        return Some(Value::from(v));
    }
    if let Ok(v) = u64::from_str_radix(digits, radix) {
        return Some(Value::from(v));
    }
    // Beyond 64 bits Python keeps the exact integer; JSON readers (and so the
    // oracle's) see it as the nearest float.
    let f = if radix == 10 {
        digits.parse::<f64>().ok()?
    } else {
        u128::from_str_radix(digits, radix).ok()? as f64
    };
    Number::from_f64(f).map(Value::Number)
}

fn negate(v: Value) -> Option<Value> {
    let Value::Number(n) = v else { return None };
    if let Some(i) = n.as_i64() {
        return Some(match i.checked_neg() {
            Some(x) => Value::from(x),
            None => Value::Number(Number::from_f64(-(i as f64))?),
        });
    }
    if let Some(u) = n.as_u64() {
        return Some(match 0i64.checked_sub_unsigned(u) {
            Some(x) => Value::from(x),
            None => Value::Number(Number::from_f64(-(u as f64))?),
        });
    }
    Number::from_f64(-n.as_f64()?).map(Value::Number)
}

/// How Python's json module writes a dict key.
fn json_key(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_literals_become_json_values() {
        let cases = [
            ("22", json!(22)),
            ("-1", json!(-1)),
            ("- 1", json!(-1)),
            ("1_000", json!(1000)),
            ("0o17", json!(15)),
            ("0x_1f", json!(31)),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            (".5", json!(0.5)),
            ("00", json!(0)),
            ("True", json!(true)),
            ("None", json!(null)),
            ("'a b'", json!("a b")),
            ("'a' \"b\"", json!("ab")),
            (r#""tab\there\x41\101""#, json!("tab\thereAA")),
            (r"r'\d'", json!(r"\d")),
            ("[1, 'x', (2,), ()]", json!([1, "x", [2], []])),
            ("{'a': 1, 2: [True],}", json!({"a": 1, "2": [true]})),
            ("{1, 2}", json!([1, 2])),
            ("set()", json!([])),
            ("(7)", json!(7)),
            ("1, 2", json!([1, 2])),
            ("8080 # a comment", json!(8080)),
            ("...", json!("...")),
        ];
        for (text, want) in cases {
            assert_eq!(literal_eval(text), Some(want.clone()), "literal_eval({text:?})");
        }
    }

    #[test]
    fn non_literals_are_left_to_the_caller() {
        for text in [
            "10.0.1.10",
            "web01",
            "bar # comment",
            "0777",
            "1abc",
            "-True",
            "1 if 1 else 2",
            "f'x'",
            "'open",
            "1j",
            "[1,",
            "1__0",
            "b'x' 'y'",
            "",
            "inf",
        ] {
            assert_eq!(literal_eval(text), None, "literal_eval({text:?}) should fail");
        }
    }
}
