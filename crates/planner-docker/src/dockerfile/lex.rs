//! Docker's shell-word processing of one Dockerfile word (`ProcessWord` in BuildKit's
//! `frontend/dockerfile/shell/lex.go`, which the engine's classic builder vendors): quotes,
//! the escape character, and `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`,
//! `${V:?w}`, `${V?w}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}`, `${V//p/r}`.
//!
//! Bounded for hostile input: nesting depth, the bytes written in all and pattern lengths
//! are capped (Docker has no caps; no real Dockerfile comes near them).

use std::collections::{BTreeMap, BTreeSet};

use regex::{Regex, RegexBuilder};

/// Variables in scope: name → value (a name absent is unset).
pub type Env = BTreeMap<String, String>;

/// Deepest `${…${…}…}` nesting accepted.
const MAX_DEPTH: usize = 32;
/// Longest `${V#pattern}` / `${V/pattern/…}` pattern accepted, in characters.
const MAX_PATTERN: usize = 256;

/// Why a word could not be processed (the message Docker gives, where it gives one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("{0}")]
    Syntax(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("expands to more than {0} bytes")]
    TooLong(usize),
    #[error("nests `${{…}}` more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// What a word became, and the names it read that were unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub unset: BTreeSet<String>,
}

/// The processor of words: one per Dockerfile (escape character) and one byte budget shared by
/// every word it processes.
pub struct Lex {
    escape: char,
    budget: usize,
    limit: usize,
}

impl Lex {
    /// A processor for `escape` that writes at most `budget` bytes in all.
    pub fn new(escape: char, budget: usize) -> Self {
        Lex {
            escape,
            budget,
            limit: budget,
        }
    }

    /// `ProcessWord(word, env)`.
    pub fn process(&mut self, word: &str, env: &Env) -> Result<Word, LexError> {
        let mut run = Run {
            chars: word.chars().collect(),
            pos: 0,
            lex: self,
            env,
            unset: BTreeSet::new(),
            depth: 0,
        };
        let text = run.until(None, false)?;
        Ok(Word {
            text,
            unset: run.unset,
        })
    }
}

/// One word being processed.
struct Run<'a> {
    chars: Vec<char>,
    pos: usize,
    lex: &'a mut Lex,
    env: &'a Env,
    unset: BTreeSet<String>,
    depth: usize,
}

impl Run<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Appends to `out`, charged to the budget.
    fn push(&mut self, out: &mut String, s: &str) -> Result<(), LexError> {
        self.lex.budget = self
            .lex
            .budget
            .checked_sub(s.len())
            .ok_or(LexError::TooLong(self.lex.limit))?;
        out.push_str(s);
        Ok(())
    }

    fn push_char(&mut self, out: &mut String, c: char) -> Result<(), LexError> {
        self.push(out, c.encode_utf8(&mut [0; 4]))
    }

    fn get(&mut self, name: &str) -> Option<String> {
        let v = self.env.get(name).cloned();
        if v.is_none() {
            self.unset.insert(name.to_owned());
        }
        v
    }

    /// `processStopOn`: up to `stop` (consumed; required when given) or the end.
    fn until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<String, LexError> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok(out);
            }
            let piece = match c {
                '$' => self.dollar()?,
                '\'' => self.single_quote()?,
                '"' => self.double_quote()?,
                _ => {
                    self.pos += 1;
                    if c == self.lex.escape {
                        if raw_escapes {
                            self.push_char(&mut out, c)?;
                        }
                        match self.next() {
                            Some(e) => self.push_char(&mut out, e)?,
                            None => break,
                        }
                    } else {
                        self.push_char(&mut out, c)?;
                    }
                    continue;
                }
            };
            self.push(&mut out, &piece)?;
        }
        match stop {
            Some(s) => Err(LexError::Syntax(format!(
                "unexpected end of statement while looking for matching {s}"
            ))),
            None => Ok(out),
        }
    }

    fn single_quote(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(LexError::Syntax(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    ));
                }
                Some('\'') => return Ok(out),
                Some(c) => self.push_char(&mut out, c)?,
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(LexError::Syntax(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    self.push(&mut out, &v)?;
                }
                Some(mut c) => {
                    self.pos += 1;
                    if c == self.lex.escape {
                        match self.peek() {
                            None => continue,
                            Some(e) if e == '"' || e == '$' || e == self.lex.escape => {
                                self.pos += 1;
                                c = e;
                            }
                            Some(_) => {}
                        }
                    }
                    self.push_char(&mut out, c)?;
                }
            }
        }
    }

    /// `processName`: digits, one special parameter, or letters, digits and `_`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && "@*#?-$!0".contains(c) {
                self.pos += 1;
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn dollar(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(missing_brace()),
            Some('{' | '}' | ':') => return Err(bad_substitution()),
            Some(_) => {}
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(LexError::TooDeep);
        }
        let name = self.name();
        let out = self.braced(&name);
        self.depth -= 1;
        out
    }

    /// After `${NAME`: the rest of the substitution, up to its `}`.
    fn braced(&mut self, name: &str) -> Result<String, LexError> {
        match self.next() {
            None => Err(missing_brace()),
            Some('}') => Ok(self.get(name).unwrap_or_default()),
            Some(':') => match self.next() {
                Some(op @ ('-' | '+' | '?')) => self.modifier(name, op, true),
                other => {
                    let op = other.map(String::from).unwrap_or_default();
                    self.word_to_brace(false)?;
                    Err(unsupported(&format!(":{op}")))
                }
            },
            Some(op @ ('-' | '+' | '?' | '#' | '%')) => self.modifier(name, op, false),
            Some('/') => self.replace(name),
            Some(op) => Err(unsupported(&op.to_string())),
        }
    }

    /// The word of a modifier, up to `}`.
    fn word_to_brace(&mut self, raw_escapes: bool) -> Result<String, LexError> {
        self.until(Some('}'), raw_escapes).map_err(|e| {
            if self.peek().is_none() {
                missing_brace()
            } else {
                e
            }
        })
    }

    fn modifier(&mut self, name: &str, op: char, null_is_unset: bool) -> Result<String, LexError> {
        let word = self.word_to_brace(op == '#' || op == '%')?;
        let value = self.get(name);
        let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
        match op {
            '-' if unset => Ok(word),
            '+' if unset => Ok(String::new()),
            '+' => Ok(word),
            '?' if unset => {
                let message = match (word.is_empty(), value.is_none()) {
                    (false, _) => word,
                    (true, true) => "is not allowed to be unset".into(),
                    (true, false) => "is not allowed to be empty".into(),
                };
                Err(LexError::Required {
                    name: name.to_owned(),
                    message,
                })
            }
            '#' | '%' => trim(&value.unwrap_or_default(), &word, op),
            _ => Ok(value.unwrap_or_default()),
        }
    }

    /// `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`.
    fn replace(&mut self, name: &str) -> Result<String, LexError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = self.until(Some('/'), true).map_err(|e| {
            if self.peek().is_none() {
                LexError::Syntax("syntax error: missing '/' in ${}".into())
            } else {
                e
            }
        })?;
        let replacement = self.word_to_brace(true)?;
        let value = self.get(name).unwrap_or_default();
        let re = pattern_regex(&pattern, true, false)?;
        let replacement = regex::NoExpand(&replacement);
        Ok(if all {
            re.replace_all(&value, replacement).into_owned()
        } else {
            re.replace(&value, replacement).into_owned()
        })
    }
}

/// `${V#p}`, `${V##p}` (prefix) and `${V%p}`, `${V%%p}` (suffix; by reversing both, as
/// Docker does).
fn trim(value: &str, word: &str, op: char) -> Result<String, LexError> {
    let (greedy, pattern) = match word.strip_prefix(op) {
        Some(rest) => (true, rest),
        None => (false, word),
    };
    if op == '#' {
        return trim_prefix(pattern, value, greedy);
    }
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, LexError> {
    let re = pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

/// Reverses a pattern, keeping each `\x` escape in front of its character.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pieces: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            pieces.push(chars[i..i + 2].iter().collect());
            i += 2;
        } else {
            pieces.push(chars[i].to_string());
            i += 1;
        }
    }
    pieces.into_iter().rev().collect()
}

/// `convertShellPatternToRegex`: `*` any string (shortest unless `greedy`), `?` one
/// character, `\` escapes `*`, `?`, `\` (and is dropped before `}` and `/`).
fn pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, LexError> {
    let invalid = |why: String| {
        LexError::Syntax(format!(
            "invalid pattern ({pattern}) in substitution: {why}"
        ))
    };
    if pattern.chars().count() > MAX_PATTERN {
        return Err(invalid(format!("longer than {MAX_PATTERN} characters")));
    }
    let mut re = String::from(if anchored { "^" } else { "" });
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(if greedy { ".*" } else { ".*?" }),
            '?' => re.push('.'),
            '\\' => match chars.peek() {
                Some('}' | '/') => {}
                _ => match chars.next() {
                    Some(e @ ('*' | '?' | '\\')) => {
                        re.push('\\');
                        re.push(e);
                    }
                    e => {
                        let e = e.map(String::from).unwrap_or_default();
                        return Err(invalid(format!("invalid escape '\\{e}'")));
                    }
                },
            },
            _ => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    RegexBuilder::new(&re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| invalid(e.to_string()))
}

fn missing_brace() -> LexError {
    LexError::Syntax("syntax error: missing '}'".into())
}

fn bad_substitution() -> LexError {
    LexError::Syntax("syntax error: bad substitution".into())
}

fn unsupported(op: &str) -> LexError {
    LexError::Syntax(format!("unsupported modifier ({op}) in substitution"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        [("A", "a"), ("E", ""), ("P", "alpine:3.19")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn run(word: &str) -> Result<String, LexError> {
        Lex::new('\\', 1 << 20)
            .process(word, &env())
            .map(|w| w.text)
    }

    #[test]
    fn substitutions_match_docker() {
        for (word, want) in [
            ("$A", "a"),
            ("${A}", "a"),
            ("x${U}y", "xy"),
            ("${U:-w}", "w"),
            ("${E:-w}", "w"),
            ("${E-w}", ""),
            ("${U-w}", "w"),
            ("${A:+w}", "w"),
            ("${E:+w}", ""),
            ("${E+w}", "w"),
            ("${U+w}", ""),
            ("${U:-${A}b}", "ab"),
            ("\\$A", "$A"),
            ("'$A'", "$A"),
            ("\"$A\"", "a"),
            ("\"\\$A\"", "$A"),
            ("$", "$"),
            ("$1", ""),
            ("${P%:*}", "alpine"),
            ("${P#*:}", "3.19"),
            ("${P/3.19/3.20}", "alpine:3.20"),
            ("${P//p/P}", "alPine:3.19"),
            ("${A?}", "a"),
        ] {
            assert_eq!(run(word).as_deref(), Ok(want), "{word}");
        }
    }

    #[test]
    fn the_escape_character_is_the_dockerfiles() {
        let mut lex = Lex::new('`', 1 << 20);
        assert_eq!(lex.process("`$A\\x", &env()).unwrap().text, "$A\\x");
    }

    #[test]
    fn unset_names_are_reported() {
        let w = Lex::new('\\', 1 << 20)
            .process("${X}:${Y:-1}$A", &env())
            .unwrap();
        assert_eq!(w.text, ":1a");
        assert_eq!(w.unset, BTreeSet::from(["X".into(), "Y".into()]));
    }

    #[test]
    fn malformed_words_are_errors_not_panics() {
        for word in [
            "${",
            "${A",
            "${}",
            "${:}",
            "${A:x}",
            "${A!}",
            "'a",
            "\"a",
            "${U?}",
            "${E:?gone}",
            "${A/x",
            "${A#\\q}",
            "${A:#x}",
        ] {
            assert!(run(word).is_err(), "{word}");
        }
        assert_eq!(
            run("${U?}").unwrap_err().to_string(),
            "U: is not allowed to be unset"
        );
        assert_eq!(
            run(&"${U:-".repeat(40)).unwrap_err(),
            LexError::TooDeep,
            "nesting is capped"
        );
    }

    #[test]
    fn the_budget_caps_what_is_written() {
        let mut lex = Lex::new('\\', 10);
        assert!(lex.process("${P}${P}", &env()).is_err());
    }
}
