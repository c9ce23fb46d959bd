//! The two small languages inside a matrix: `${var}` templates (ports,
//! CIDRs) and `when:` conditions over profiles and variables.

use std::collections::{BTreeMap, BTreeSet};

/// A string with `${name}`, `${name+N}` or `${name-N}` holes, filled from
/// the variables of a run. Parsed once at load; evaluated per selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var { name: String, offset: i64 },
}

impl Template {
    pub fn literal(s: &str) -> Template {
        Template { parts: vec![Part::Lit(s.to_string())] }
    }

    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                format!("`${{` without a closing `}}` in {s:?}; write ${{name}} or ${{name+N}}")
            })?;
            parts.push(parse_hole(after[..end].trim(), s)?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Names of the variables the template reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, .. } => Some(name.as_str()),
            Part::Lit(_) => None,
        })
    }

    pub fn eval(&self, vars: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var { name, offset } => {
                    let v = vars.get(name).ok_or_else(|| {
                        format!("undefined variable `{name}`; declare it under `variables:` or pass --set {name}=VALUE")
                    })?;
                    if *offset == 0 {
                        out.push_str(v);
                    } else {
                        let n: i64 = v.trim().parse().map_err(|_| {
                            format!("variable `{name}` is {v:?}, not a number, so `{name}{offset:+}` cannot be computed")
                        })?;
                        out.push_str(&(n + offset).to_string());
                    }
                }
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.parts {
            match p {
                Part::Lit(s) => f.write_str(s)?,
                Part::Var { name, offset: 0 } => write!(f, "${{{name}}}")?,
                Part::Var { name, offset } => write!(f, "${{{name}{offset:+}}}")?,
            }
        }
        Ok(())
    }
}

fn parse_hole(inner: &str, whole: &str) -> Result<Part, String> {
    let split = inner.find(['+', '-']).filter(|&i| i > 0);
    let (name, offset) = match split {
        Some(i) => {
            let num = inner[i + 1..].trim();
            let n: i64 = num.parse().map_err(|_| {
                format!("`${{{inner}}}` in {whole:?}: expected a whole number after `{}`", &inner[i..i + 1])
            })?;
            (inner[..i].trim(), if &inner[i..i + 1] == "-" { -n } else { n })
        }
        None => (inner, 0),
    };
    if !is_ident(name) {
        return Err(format!(
            "`${{{inner}}}` in {whole:?}: expected a variable name (letters, digits, `_`), optionally `+N` or `-N`"
        ));
    }
    Ok(Part::Var { name: name.to_string(), offset })
}

pub(super) fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A `when:` condition. Bare names test a profile (selected?) or a variable
/// (truthy?); `name == value` and `name != value` compare a variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    Name(String),
    Eq(String, String),
    Ne(String, String),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

/// What a condition is evaluated against.
pub struct CondEnv<'a> {
    pub profiles: &'a BTreeSet<String>,
    pub vars: &'a BTreeMap<String, String>,
}

/// Values a variable counts as false when tested bare.
const FALSY: [&str; 6] = ["", "false", "no", "off", "0", "none"];

impl Cond {
    pub fn eval(&self, env: &CondEnv) -> bool {
        match self {
            Cond::Name(n) => {
                env.profiles.contains(n)
                    || env
                        .vars
                        .get(n)
                        .is_some_and(|v| !FALSY.contains(&v.trim().to_ascii_lowercase().as_str()))
            }
            Cond::Eq(n, v) => env.vars.get(n).is_some_and(|x| x == v),
            Cond::Ne(n, v) => env.vars.get(n).is_none_or(|x| x != v),
            Cond::Not(c) => !c.eval(env),
            Cond::And(a, b) => a.eval(env) && b.eval(env),
            Cond::Or(a, b) => a.eval(env) || b.eval(env),
        }
    }

    /// Every name the condition reads, bare or compared.
    pub fn names(&self, out: &mut Vec<String>) {
        match self {
            Cond::Name(n) | Cond::Eq(n, _) | Cond::Ne(n, _) => out.push(n.clone()),
            Cond::Not(c) => c.names(out),
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.names(out);
                b.names(out);
            }
        }
    }

    /// Variables compared with `==`/`!=`, with the literal compared against.
    pub fn comparisons(&self, out: &mut Vec<(String, String)>) {
        match self {
            Cond::Eq(n, v) | Cond::Ne(n, v) => out.push((n.clone(), v.clone())),
            Cond::Name(_) => {}
            Cond::Not(c) => c.comparisons(out),
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.comparisons(out);
                b.comparisons(out);
            }
        }
    }

    pub fn parse(s: &str) -> Result<Cond, String> {
        let toks = lex(s)?;
        let mut p = CondParser { toks: &toks, i: 0, src: s };
        let c = p.or()?;
        if p.i != toks.len() {
            return Err(format!("unexpected `{}` in condition {s:?}", toks[p.i]));
        }
        Ok(c)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Not,
    And,
    Or,
    Eq,
    Ne,
    Open,
    Close,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Word(w) => f.write_str(w),
            Tok::Not => f.write_str("!"),
            Tok::And => f.write_str("&&"),
            Tok::Or => f.write_str("||"),
            Tok::Eq => f.write_str("=="),
            Tok::Ne => f.write_str("!="),
            Tok::Open => f.write_str("("),
            Tok::Close => f.write_str(")"),
        }
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        let two = s.get(i..i + 2).unwrap_or("");
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            _ if two == "&&" => {
                out.push(Tok::And);
                i += 2
            }
            _ if two == "||" => {
                out.push(Tok::Or);
                i += 2
            }
            _ if two == "==" => {
                out.push(Tok::Eq);
                i += 2
            }
            _ if two == "!=" => {
                out.push(Tok::Ne);
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '"' | '\'' => {
                let end =
                    s[i + 1..].find(c).ok_or_else(|| format!("unterminated quote in condition {s:?}"))?;
                out.push(Tok::Word(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            _ if c.is_ascii_alphanumeric() || "_-.:/".contains(c) => {
                let start = i;
                while i < b.len()
                    && ((b[i] as char).is_ascii_alphanumeric() || "_-.:/".contains(b[i] as char))
                {
                    i += 1;
                }
                out.push(Tok::Word(s[start..i].to_string()));
            }
            _ => {
                return Err(format!(
                "unexpected character {c:?} in condition {s:?}; use names, ==, !=, !, &&, || and parentheses"
            ))
            }
        }
    }
    Ok(out)
}

struct CondParser<'a> {
    toks: &'a [Tok],
    i: usize,
    src: &'a str,
}

impl CondParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut l = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.i += 1;
            l = Cond::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut l = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.i += 1;
            l = Cond::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Cond, String> {
        match self.peek().cloned() {
            Some(Tok::Not) => {
                self.i += 1;
                Ok(Cond::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Open) => {
                self.i += 1;
                let c = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(format!("missing `)` in condition {:?}", self.src));
                }
                self.i += 1;
                Ok(c)
            }
            Some(Tok::Word(name)) => {
                self.i += 1;
                let op = self.peek().cloned();
                if matches!(op, Some(Tok::Eq) | Some(Tok::Ne)) {
                    self.i += 1;
                    let Some(Tok::Word(v)) = self.peek().cloned() else {
                        return Err(format!(
                            "expected a value after `{}` in condition {:?}",
                            op.unwrap(),
                            self.src
                        ));
                    };
                    self.i += 1;
                    return Ok(if op == Some(Tok::Eq) { Cond::Eq(name, v) } else { Cond::Ne(name, v) });
                }
                Ok(Cond::Name(name))
            }
            Some(t) => Err(format!("unexpected `{t}` in condition {:?}; expected a name", self.src)),
            None => Err(format!("condition {:?} ends early; expected a name", self.src)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn templates_shift_with_their_variable() {
        let t = Template::parse("${grpcPortBase}-${grpcPortBase+11}").unwrap();
        assert_eq!(t.eval(&vars(&[("grpcPortBase", "7001")])).unwrap(), "7001-7012");
        assert_eq!(t.eval(&vars(&[("grpcPortBase", "8001")])).unwrap(), "8001-8012");
        assert_eq!(Template::parse("${ base - 1 }").unwrap().eval(&vars(&[("base", "10")])).unwrap(), "9");
        assert_eq!(t.to_string(), "${grpcPortBase}-${grpcPortBase+11}");
    }

    #[test]
    fn template_errors_say_what_is_wrong() {
        assert!(Template::parse("${base").unwrap_err().contains("closing"));
        assert!(Template::parse("${base+x}").unwrap_err().contains("whole number"));
        assert!(Template::parse("${1base}").unwrap_err().contains("variable name"));
        let e = Template::parse("${nope}").unwrap().eval(&vars(&[])).unwrap_err();
        assert!(e.contains("undefined variable `nope`"), "{e}");
        let e = Template::parse("${db+1}").unwrap().eval(&vars(&[("db", "postgres")])).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
    }

    #[test]
    fn conditions_test_profiles_and_variables() {
        let profiles: BTreeSet<String> = ["ha".to_string()].into();
        let v = vars(&[("db", "postgres"), ("ai", "false")]);
        let env = CondEnv { profiles: &profiles, vars: &v };
        let t = |s: &str| Cond::parse(s).unwrap().eval(&env);
        assert!(t("ha"));
        assert!(!t("!ha"));
        assert!(t("db == postgres"));
        assert!(t("db != 'mssql'"));
        assert!(!t("ai"), "ai=false is falsy");
        assert!(t("ha && (db == mssql || !ai)"));
        assert!(!t("air-gapped"), "unselected profile");
    }

    #[test]
    fn condition_syntax_errors_are_reported() {
        assert!(Cond::parse("ha &&").unwrap_err().contains("ends early"));
        assert!(Cond::parse("(ha").unwrap_err().contains("missing `)`"));
        assert!(Cond::parse("db ==").unwrap_err().contains("expected a value"));
        assert!(Cond::parse("ha ha").unwrap_err().contains("unexpected `ha`"));
        assert!(Cond::parse("a & b").unwrap_err().contains("unexpected character"));
    }
}
