//! The word splitting Ansible's INI plugin applies to host lines: Python's
//! `shlex.split(line, comments=True, posix=True)`. Reimplemented rather than
//! taken from a shell-words crate because the details that decide what a
//! host line means are Python's: `#` ends a word *and* the line anywhere
//! outside quotes (`a=b#c` is `a=b`), `;` is an ordinary character, and a
//! backslash inside double quotes escapes only `"` and `\`.

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ShlexError {
    /// A quote opened at this (0-based, in characters) column is never closed.
    NoClosingQuotation { column: usize },
    /// The line ends with a lone backslash.
    NoEscapedCharacter,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Between,
    Word,
    Quote(char),
    /// A backslash was read; the state to return to after the next character.
    Escape(Escaped),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escaped {
    Word,
    DoubleQuote,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits one line into words exactly as `shlex.split(line, comments=True)`.
pub(crate) fn split(line: &str) -> Result<Vec<String>, ShlexError> {
    let mut words = Vec::new();
    let mut token = String::new();
    // A word that contained quotes is kept even when empty (`a ""` is two words).
    let mut quoted = false;
    let mut quote_column = 0;
    let mut state = State::Between;
    for (column, c) in line.chars().enumerate() {
        match state {
            State::Between | State::Word => {
                if is_space(c) || c == '#' {
                    if state == State::Word || quoted {
                        words.push(std::mem::take(&mut token));
                        quoted = false;
                    }
                    state = State::Between;
                    if c == '#' {
                        return Ok(words);
                    }
                } else if c == '\\' {
                    state = State::Escape(Escaped::Word);
                } else if c == '"' || c == '\'' {
                    quote_column = column;
                    state = State::Quote(c);
                } else {
                    token.push(c);
                    state = State::Word;
                }
            }
            State::Quote(q) => {
                quoted = true;
                if c == q {
                    state = State::Word;
                } else if c == '\\' && q == '"' {
                    state = State::Escape(Escaped::DoubleQuote);
                } else {
                    token.push(c);
                }
            }
            State::Escape(back) => {
                if back == Escaped::DoubleQuote && c != '"' && c != '\\' {
                    token.push('\\');
                }
                token.push(c);
                state = match back {
                    Escaped::Word => State::Word,
                    Escaped::DoubleQuote => State::Quote('"'),
                };
            }
        }
    }
    match state {
        State::Quote(_) => Err(ShlexError::NoClosingQuotation { column: quote_column }),
        State::Escape(_) => Err(ShlexError::NoEscapedCharacter),
        State::Word => {
            words.push(token);
            Ok(words)
        }
        State::Between => {
            if quoted {
                words.push(token);
            }
            Ok(words)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line).unwrap_or_else(|e| panic!("{line:?} should split, got {e:?}"))
    }

    #[test]
    fn quotes_join_and_disappear() {
        assert_eq!(
            words(r#"node1 ansible_host=10.0.1.10 foo="a b" bar='c d'"#),
            ["node1", "ansible_host=10.0.1.10", "foo=a b", "bar=c d"]
        );
        assert_eq!(words(r#"a "" b"#), ["a", "", "b"]);
        assert_eq!(words(r#"x='"q"'"#), [r#"x="q""#]);
    }

    #[test]
    fn hash_ends_the_line_even_inside_a_word() {
        assert_eq!(words("a=b#c d=e"), ["a=b"]);
        assert_eq!(words("host # comment"), ["host"]);
        assert_eq!(words("a='#not a comment'"), ["a=#not a comment"]);
        // `;` is not a comment marker after the first character.
        assert_eq!(words("h x=1 ;c"), ["h", "x=1", ";c"]);
    }

    #[test]
    fn backslashes_follow_posix_rules() {
        assert_eq!(words(r"a\ b"), ["a b"]);
        assert_eq!(words(r#""a\"b\\c\d""#), [r#"a"b\c\d"#]);
        assert_eq!(words(r"'a\b'"), [r"a\b"]);
    }

    #[test]
    fn unbalanced_input_is_an_error() {
        assert_eq!(split(r#"h foo="a b"#), Err(ShlexError::NoClosingQuotation { column: 6 }));
        assert_eq!(split("h a\\"), Err(ShlexError::NoEscapedCharacter));
    }
}
