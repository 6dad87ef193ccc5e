//! Go's `regexp` syntax (RE2 with Go's Perl flags) in the `regex` crate's syntax, for the
//! regexes moby builds from `.dockerignore` patterns. moby escapes `.+()|{}$` and turns `*`,
//! `**` and `?` into its own pieces, but hands `[`, `]`, `^` and every `\x` escape to Go
//! unchanged, so a pattern means what Go makes of that text: `a\d` is `a` and a digit, `x^*`
//! matches nothing, `y[.*\]]` is a class of `.`, `[`, `^`, `/` followed by anything and `]]`,
//! and `[[:alpha:]]x` is a POSIX class. This module parses that text as Go's parser does and
//! writes it out in explicit form (every class member escaped, ASCII `\d`, `\s`, `\w`, `\b`),
//! or returns Go's error message when Go would not compile it.
//!
//! Groups never capture, and runs of the wildcard pieces that mean the same as one collapse
//! (`[^/]*[^/]*`, `(.*/)?(.*/)?`, `(.*/)?.*`), which keeps the compiled size of long runs of
//! stars bounded.

/// The `regex` crate's text and how many wildcards (classes and groups) it kept.
#[derive(Debug)]
pub(crate) struct Translated {
    pub text: String,
    pub wildcards: usize,
}

/// One piece of a concatenation: an atom with its repetition operator, or a `|`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    atom: String,
    op: String,
    wildcards: usize,
}

const ANY_DIRS_GROUP: &str = "(?:.*/)";

/// Translates Go regexp text to the `regex` crate's; `Err` carries Go's own error message.
pub(crate) fn translate(go: &str) -> Result<Translated, String> {
    let mut parser = Parser {
        chars: go.chars().collect(),
        at: 0,
        whole: go,
    };
    parser.run()
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    whole: &'a str,
}

fn go_error(code: &str, expr: &str) -> String {
    format!("error parsing regexp: {code}: `{expr}`")
}

impl Parser<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn rest(&self, from: usize) -> String {
        self.chars[from.min(self.chars.len())..].iter().collect()
    }

    fn run(&mut self) -> Result<Translated, String> {
        let mut stack: Vec<Vec<Piece>> = vec![Vec::new()];
        while let Some(c) = self.peek(0) {
            match c {
                '(' => {
                    if self.peek(1) == Some('?') {
                        return Err(go_error(
                            "planner does not translate Perl groups",
                            &self.rest(self.at),
                        ));
                    }
                    self.at += 1;
                    stack.push(Vec::new());
                }
                ')' => {
                    if stack.len() == 1 {
                        return Err(go_error("unexpected )", self.whole));
                    }
                    self.at += 1;
                    let inner = stack.pop().unwrap_or_default();
                    let wildcards = 1 + inner.iter().map(|p| p.wildcards).sum::<usize>();
                    let atom = format!("(?:{})", render(&inner));
                    push(&mut stack, atom, wildcards);
                }
                '|' => {
                    self.at += 1;
                    push(&mut stack, "|".to_owned(), 0);
                }
                '*' | '+' | '?' => self.repeat(current(&mut stack))?,
                '{' => {
                    return Err(go_error(
                        "planner does not translate counted repetition",
                        &self.rest(self.at),
                    ));
                }
                '^' | '$' | '.' => {
                    self.at += 1;
                    push(&mut stack, c.to_string(), usize::from(c == '.'));
                }
                '[' => {
                    let class = self.class()?;
                    push(&mut stack, class, 1);
                }
                '\\' => self.escape_outside(&mut stack)?,
                other => {
                    self.at += 1;
                    push(&mut stack, literal(other), 0);
                }
            }
        }
        if stack.len() != 1 {
            return Err(go_error("missing closing )", self.whole));
        }
        let pieces = stack.pop().unwrap_or_default();
        Ok(Translated {
            text: render(&pieces),
            wildcards: pieces.iter().map(|p| p.wildcards).sum(),
        })
    }

    /// `*`, `+` or `?` (and a `?` after it for non-greedy), applied to the last atom.
    fn repeat(&mut self, pieces: &mut Vec<Piece>) -> Result<(), String> {
        let start = self.at;
        let op = self.chars[self.at];
        self.at += 1;
        let mut text = op.to_string();
        if self.peek(0) == Some('?') {
            self.at += 1;
            text.push('?');
        }
        let Some(last) = pieces.last_mut().filter(|p| p.atom != "|") else {
            let expr: String = self.chars[start..self.at].iter().collect();
            return Err(go_error("missing argument to repetition operator", &expr));
        };
        if !last.op.is_empty() {
            let expr: String = self.chars[start - last.op.len()..self.at].iter().collect();
            return Err(go_error("invalid nested repetition operator", &expr));
        }
        last.op = text;
        collapse(pieces);
        Ok(())
    }

    /// A `\` outside a class: assertions, `\Q…\E`, Unicode and Perl classes, or one character.
    fn escape_outside(&mut self, stack: &mut [Vec<Piece>]) -> Result<(), String> {
        let pieces = current(stack);
        let atom = match self.peek(1) {
            Some('A') => Some("\\A"),
            Some('z') => Some("\\z"),
            Some('b') => Some("(?-u:\\b)"),
            Some('B') => Some("(?-u:\\B)"),
            Some('C') => return Err(go_error("invalid escape sequence", "\\C")),
            _ => None,
        };
        if let Some(atom) = atom {
            self.at += 2;
            pieces.push(piece(atom.to_owned(), 0));
            return Ok(());
        }
        match self.peek(1) {
            Some('Q') => {
                self.at += 2;
                while let Some(c) = self.peek(0) {
                    if c == '\\' && self.peek(1) == Some('E') {
                        self.at += 2;
                        break;
                    }
                    self.at += 1;
                    pieces.push(piece(literal(c), 0));
                }
            }
            Some('p' | 'P') => {
                let class = self.unicode_class()?;
                pieces.push(piece(format!("[{class}]"), 1));
            }
            Some(c) if perl_class(c).is_some() => {
                self.at += 2;
                pieces.push(piece(format!("[{}]", perl_class(c).unwrap_or_default()), 1));
            }
            _ => {
                let c = self.escape()?;
                pieces.push(piece(literal(c), 0));
            }
        }
        Ok(())
    }

    /// Go's `parseEscape`: one escaped character; `self.at` is at the `\`.
    fn escape(&mut self) -> Result<char, String> {
        let start = self.at;
        self.at += 1;
        let Some(c) = self.peek(0) else {
            return Err(go_error("trailing backslash at end of expression", ""));
        };
        self.at += 1;
        let bad = |p: &Self| {
            let expr: String = p.chars[start..p.at].iter().collect();
            Err(go_error("invalid escape sequence", &expr))
        };
        match c {
            '1'..='7' if !self.peek(0).is_some_and(|d| ('0'..='7').contains(&d)) => bad(self),
            '0'..='7' => {
                let mut value = c as u32 - '0' as u32;
                for _ in 1..3 {
                    match self.peek(0) {
                        Some(d @ '0'..='7') => {
                            value = value * 8 + (d as u32 - '0' as u32);
                            self.at += 1;
                        }
                        _ => break,
                    }
                }
                char::from_u32(value).map_or_else(|| bad(self), Ok)
            }
            'x' => self.hex_escape().map_or_else(|| bad(self), Ok),
            'a' => Ok('\u{7}'),
            'f' => Ok('\u{c}'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\u{b}'),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok(c),
            _ => bad(self),
        }
    }

    /// After `\x`: two hex digits or `{hex…}`.
    fn hex_escape(&mut self) -> Option<char> {
        let first = self.peek(0)?;
        self.at += 1;
        if first == '{' {
            let mut value: u32 = 0;
            let mut digits = 0;
            loop {
                let c = self.peek(0)?;
                self.at += 1;
                if c == '}' {
                    break;
                }
                value = value.checked_mul(16)? + c.to_digit(16)?;
                if value > 0x10FFFF {
                    return None;
                }
                digits += 1;
            }
            return if digits == 0 {
                None
            } else {
                char::from_u32(value)
            };
        }
        let second = self.peek(0)?;
        self.at += 1;
        char::from_u32(first.to_digit(16)? * 16 + second.to_digit(16)?)
    }

    /// Go's `parseUnicodeClass` at `\p`/`\P`: the class's members (for inside `[…]`).
    fn unicode_class(&mut self) -> Result<String, String> {
        let start = self.at;
        let mut negated = self.peek(1) == Some('P');
        self.at += 2;
        let name: String = match self.peek(0) {
            Some('{') => {
                let from = self.at + 1;
                let Some(end) = self.chars[from..].iter().position(|&c| c == '}') else {
                    return Err(go_error("invalid character class range", &self.rest(start)));
                };
                self.at = from + end + 1;
                self.chars[from..from + end].iter().collect()
            }
            Some(c) => {
                self.at += 1;
                c.to_string()
            }
            None => String::new(),
        };
        let seq: String = self.chars[start..self.at].iter().collect();
        let name = match name.strip_prefix('^') {
            Some(rest) => {
                negated = !negated;
                rest.to_owned()
            }
            None => name,
        };
        let members = unicode_members(&name)
            .ok_or_else(|| go_error("invalid character class range", &seq))?;
        Ok(if negated {
            format!("[^{members}]")
        } else {
            members
        })
    }

    /// Go's `parseClass` at `[`: the class in the `regex` crate's syntax.
    fn class(&mut self) -> Result<String, String> {
        let whole = self.rest(self.at);
        self.at += 1;
        let mut out = String::from("[");
        if self.peek(0) == Some('^') {
            out.push('^');
            self.at += 1;
        }
        let mut first = true;
        loop {
            if self.peek(0) == Some(']') && !first {
                self.at += 1;
                break;
            }
            first = false;
            if let Some(posix) = self.posix_class()? {
                out.push_str(&posix);
                continue;
            }
            if self.peek(0) == Some('\\') && matches!(self.peek(1), Some('p' | 'P')) {
                out.push_str(&self.unicode_class()?);
                continue;
            }
            if self.peek(0) == Some('\\')
                && let Some(members) = self.peek(1).and_then(perl_class)
            {
                self.at += 2;
                out.push_str(&members);
                continue;
            }
            let range_start = self.at;
            let lo = self.class_char(&whole)?;
            let mut hi = lo;
            if self.peek(0) == Some('-') && self.peek(1).is_some_and(|c| c != ']') {
                self.at += 1;
                hi = self.class_char(&whole)?;
                if hi < lo {
                    let expr: String = self.chars[range_start..self.at].iter().collect();
                    return Err(go_error("invalid character class range", &expr));
                }
            }
            out.push_str(&range(lo, hi));
        }
        out.push(']');
        Ok(out)
    }

    /// `[:name:]` inside a class (Go searches the rest of the text for `:]`).
    fn posix_class(&mut self) -> Result<Option<String>, String> {
        if self.peek(0) != Some('[') || self.peek(1) != Some(':') || self.peek(2).is_none() {
            return Ok(None);
        }
        let from = self.at + 2;
        let Some(end) = self.chars[from..]
            .windows(2)
            .position(|w| w == [':', ']'])
            .map(|i| from + i + 2)
        else {
            return Ok(None);
        };
        let name: String = self.chars[self.at..end].iter().collect();
        let members =
            posix_members(&name).ok_or_else(|| go_error("invalid character class range", &name))?;
        self.at = end;
        Ok(Some(members))
    }

    /// Go's `parseClassChar`.
    fn class_char(&mut self, whole: &str) -> Result<char, String> {
        match self.peek(0) {
            None => Err(go_error("missing closing ]", whole)),
            Some('\\') => self.escape(),
            Some(c) => {
                self.at += 1;
                Ok(c)
            }
        }
    }
}

fn piece(atom: String, wildcards: usize) -> Piece {
    Piece {
        atom,
        op: String::new(),
        wildcards,
    }
}

fn current(stack: &mut [Vec<Piece>]) -> &mut Vec<Piece> {
    let last = stack.len() - 1;
    &mut stack[last]
}

fn push(stack: &mut [Vec<Piece>], atom: String, wildcards: usize) {
    current(stack).push(piece(atom, wildcards));
}

/// Drops the last piece when it adds nothing to the one before (`X*X*`, `(.*/)?(.*/)?`), or
/// the one before when the last covers it (`(.*/)?.*`).
fn collapse(pieces: &mut Vec<Piece>) {
    let n = pieces.len();
    if n < 2 {
        return;
    }
    let (a, b) = (&pieces[n - 2], &pieces[n - 1]);
    let any_dirs = |p: &Piece| p.atom == ANY_DIRS_GROUP && p.op == "?";
    if a == b && (b.op == "*" || any_dirs(b)) {
        pieces.pop();
    } else if any_dirs(a) && b.atom == "." && b.op == "*" {
        pieces.remove(n - 2);
    }
}

fn render(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| format!("{}{}", p.atom, p.op))
        .collect()
}

/// A literal character, escaped unless it is plainly safe.
fn literal(c: char) -> String {
    if c.is_ascii_alphanumeric() || c == '/' || c == '_' || (!c.is_ascii() && !c.is_control()) {
        c.to_string()
    } else {
        hex(c)
    }
}

fn hex(c: char) -> String {
    format!("\\x{{{:X}}}", c as u32)
}

fn range(lo: char, hi: char) -> String {
    if lo == hi {
        hex(lo)
    } else {
        format!("{}-{}", hex(lo), hex(hi))
    }
}

/// Go's Perl classes (ASCII): members for inside `[…]`, negated ones as a nested class.
fn perl_class(c: char) -> Option<String> {
    let members = match c.to_ascii_lowercase() {
        'd' => "0-9",
        's' => "\\t\\n\\x{C}\\r ",
        'w' => "0-9A-Za-z_",
        _ => return None,
    };
    Some(if c.is_ascii_uppercase() {
        format!("[^{members}]")
    } else {
        members.to_owned()
    })
}

/// Go's POSIX classes (`[:alpha:]`, `[:^alpha:]`, …), ASCII as in Go.
fn posix_members(name: &str) -> Option<String> {
    let inner = name.strip_prefix("[:")?.strip_suffix(":]")?;
    let (negated, inner) = match inner.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let members = match inner {
        "alnum" => "0-9A-Za-z",
        "alpha" => "A-Za-z",
        "ascii" => "\\x{0}-\\x{7F}",
        "blank" => "\\t ",
        "cntrl" => "\\x{0}-\\x{1F}\\x{7F}",
        "digit" => "0-9",
        "graph" => "!-~",
        "lower" => "a-z",
        "print" => " -~",
        "punct" => "!-/:-@\\[-`\\{-~",
        "space" => "\\t\\n\\x{B}\\x{C}\\r ",
        "upper" => "A-Z",
        "word" => "0-9A-Za-z_",
        "xdigit" => "0-9A-Fa-f",
        _ => return None,
    };
    Some(if negated {
        format!("[^{members}]")
    } else {
        members.to_owned()
    })
}

/// The Unicode classes Go's `unicode` package names: `Any` and the general categories (Go's
/// `C` has no unassigned code points, unlike Unicode's).
fn unicode_members(name: &str) -> Option<String> {
    const CATEGORIES: &[&str] = &[
        "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd", "Nl", "No", "P", "Pc",
        "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So", "Z", "Zl", "Zp", "Zs",
        "Cc", "Cf", "Co",
    ];
    match name {
        "Any" => Some("\\x{0}-\\x{10FFFF}".to_owned()),
        "C" => Some("\\p{Cc}\\p{Cf}\\p{Co}".to_owned()),
        _ if CATEGORIES.contains(&name) => Some(format!("\\p{{{name}}}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust(go: &str) -> regex::Regex {
        let t = translate(go).unwrap_or_else(|e| panic!("{go}: {e}"));
        regex::Regex::new(&t.text).unwrap_or_else(|e| panic!("{go} -> {}: {e}", t.text))
    }

    fn err(go: &str) -> String {
        translate(go).map(|t| t.text).unwrap_err()
    }

    #[test]
    fn perl_classes_are_ascii() {
        let re = rust("^a\\d$");
        assert!(re.is_match("a7"));
        assert!(!re.is_match("a٣"));
        assert!(!re.is_match("ad"));
        assert!(rust("^\\w\\s\\W$").is_match("_ -"));
        assert!(!rust("^\\w$").is_match("é"));
    }

    #[test]
    fn caret_in_the_middle_never_matches() {
        let re = rust("^x^[^/]*$");
        assert!(!re.is_match("x"));
        assert!(!re.is_match("x^"));
        assert!(!re.is_match("x^a"));
    }

    #[test]
    fn brackets_inside_a_class_are_members() {
        // moby turns `y[.*\]]` into this.
        let re = rust("^y[\\.[^/]*\\]]$");
        assert!(re.is_match("y]]"));
        assert!(re.is_match("y.]]"));
        assert!(re.is_match("y[[/^]]"));
        assert!(!re.is_match("y."));
        assert!(!re.is_match("y]"));
        assert!(!re.is_match("ya]]"));
    }

    #[test]
    fn posix_classes() {
        let re = rust("^[[:alpha:]]x$");
        assert!(re.is_match("ax"));
        assert!(!re.is_match("1x"));
        assert!(!re.is_match("éx"));
        assert!(rust("^[[:^digit:]]$").is_match("a"));
        assert!(!rust("^[[:^digit:]]$").is_match("1"));
        assert!(err("[[:foo:]]").contains("invalid character class range: `[:foo:]`"));
    }

    #[test]
    fn class_edge_cases_follow_go() {
        assert!(rust("^[]a]$").is_match("]"));
        assert!(rust("^[a-]$").is_match("-"));
        assert!(rust("^[^a]$").is_match("\n"));
        assert!(rust("^[a&&b~~]$").is_match("&"));
        assert!(rust("^[a&&b~~]$").is_match("~"));
        assert!(err("^[~--]$").contains("invalid character class range: `~--`"));
        assert!(err("^[z-a]$").contains("invalid character class range: `z-a`"));
        assert!(err("^[a").contains("missing closing ]: `[a`"));
    }

    #[test]
    fn escapes_follow_go() {
        assert!(rust("^\\a$").is_match("\u{7}"));
        assert!(rust("^\\x41\\101\\.$").is_match("AA."));
        assert!(err("^\\q$").contains("invalid escape sequence: `\\q`"));
        assert!(err("^\\8$").contains("invalid escape sequence: `\\8`"));
        assert!(err("^\\é$").contains("invalid escape sequence"));
        assert!(err("^\\C$").contains("invalid escape sequence: `\\C`"));
        assert!(err("\\").contains("trailing backslash"));
        let quoted = rust("^\\Qa[^/]*$");
        assert!(quoted.is_match("a[^/]*$"));
        assert!(
            quoted.is_match("a[^/]*$tail"),
            "the quoted `$` is no anchor"
        );
        assert!(rust("^\\Q.\\E[^/]*$").is_match(".x"));
    }

    #[test]
    fn unicode_classes_and_boundaries() {
        assert!(rust("^\\pL$").is_match("é"));
        assert!(!rust("^\\PL$").is_match("é"));
        assert!(rust("^[\\pN]$").is_match("٣"));
        assert!(err("^\\pX$").contains("invalid character class range: `\\pX`"));
        assert!(err("^\\p\\{L\\}$").contains("invalid character class range"));
        assert!(rust("^a\\b$").is_match("a"));
        assert!(
            rust("^a\\bé$").is_match("aé"),
            "ASCII boundary: é is no word character"
        );
        assert!(!rust("^é\\b$").is_match("é"));
    }

    #[test]
    fn wildcard_runs_collapse() {
        let t = translate(&format!("^{}$", "[^/]*".repeat(100))).unwrap();
        assert_eq!(t.text, "^[^\\x{2F}]*$");
        let t = translate(&format!("^{}.*$", "(.*/)?".repeat(100))).unwrap();
        assert_eq!(t.text, "^.*$");
        assert_eq!(t.wildcards, 1);
        let t = translate("^(.*/)?(.*/)?a$").unwrap();
        assert_eq!(t.text, "^(?:.*/)?a$");
        assert!(regex::Regex::new(&t.text).unwrap().is_match("x/y/a"));
    }
}
