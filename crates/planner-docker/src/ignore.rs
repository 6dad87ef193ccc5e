//! `.dockerignore` with Docker's semantics: reading the file the way the docker CLI does
//! (`moby/patternmatcher/ignorefile.ReadAll`) and matching paths the way `moby/patternmatcher`
//! does, with each of the three functions the docker CLI uses: `MatchesOrParentMatches` (its
//! context check), `MatchesUsingParentResults` (its tar walk) and the older `Matches` (deciding
//! whether the Dockerfile and `.dockerignore` need an exception). Like moby, a pattern is
//! checked with `filepath.Match` when the file is read (errors refuse the file) but compiled
//! only when a path first reaches it: one that then fails is an error only if some path
//! reaches it. This module owns the parsing and the matching; walking a directory tree is
//! [`crate::context`]'s job.
//!
//! A `.dockerignore` comes from the repository, so it is bounded like any hostile input: the
//! file's size ([`MAX_FILE_BYTES`]), the number of patterns ([`MAX_PATTERNS`]), each pattern's
//! length ([`MAX_PATTERN_BYTES`]), each compiled regex ([`REGEX_SIZE_LIMIT`], its lazy DFA
//! cache [`DFA_CACHE_LIMIT`]) and the wildcards of the whole file ([`MAX_WILDCARDS`], about
//! 1 KiB compiled each). Regexes have no capturing groups, redundant runs of wildcards collapse
//! (`**/**` is `**`), and the `regex` crate matches in time linear in the path and the regex
//! size, so memory stays within tens of MiB and matching one path costs at most
//! O(wildcards × path length), whatever the patterns say.

use regex::{Regex, RegexBuilder};

use super::goregex;

/// Largest `.dockerignore` read (1 MiB): real ones are a few KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Most patterns (non-blank, non-comment lines) in one `.dockerignore`.
pub const MAX_PATTERNS: usize = 10_000;
/// Longest pattern, in bytes: PATH_MAX, since no longer path exists to match.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Largest compiled form of one pattern's regex (1 MiB: about 1,000 wildcards).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Largest lazy-DFA cache of one pattern's regex (256 KiB).
pub const DFA_CACHE_LIMIT: usize = 256 << 10;
/// Most wildcards (`*`, `**`, `?`, `[…]`, after collapsing runs) in all the patterns of a file.
pub const MAX_WILDCARDS: usize = 20_000;
/// How much of a refused pattern an error message quotes.
const QUOTED_CHARS: usize = 60;

/// A `.dockerignore` that Docker would reject, or that is beyond planner's bounds.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("line {line}: {message}")]
    Pattern { line: usize, message: String },
    #[error("line {line}: more than {MAX_PATTERNS} patterns")]
    TooManyPatterns { line: usize },
    #[error("line {line}: more than {MAX_WILDCARDS} wildcards in the patterns up to this line")]
    TooManyWildcards { line: usize },
    /// The file is over [`MAX_FILE_BYTES`] (found when reading it).
    #[error("the file is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes (1 MiB)")]
    TooLarge { size: u64 },
    /// A pattern that reads fine but cannot be compiled, reached by a path: Docker fails then too.
    #[error(
        "line {line}: pattern {pattern} is not a regular expression Docker can compile ({message}), and {path:?} reaches it"
    )]
    Unmatchable {
        line: usize,
        pattern: String,
        path: String,
        message: String,
    },
}

impl IgnoreError {
    /// What to do about it, for the `help:` line of errors.
    pub fn help(&self) -> String {
        match self {
            IgnoreError::Pattern { line, .. } | IgnoreError::Unmatchable { line, .. } => {
                format!("fix or remove line {line} of .dockerignore in the repository")
            }
            IgnoreError::TooManyWildcards { .. } => format!(
                "planner compiles at most {MAX_WILDCARDS} wildcards from a .dockerignore: \
                 simplify its patterns in the repository"
            ),
            IgnoreError::TooManyPatterns { .. } => format!(
                "planner reads at most {MAX_PATTERNS} patterns from a .dockerignore: merge them \
                 (e.g. one `dir/**` instead of many files) in the repository"
            ),
            IgnoreError::TooLarge { .. } => format!(
                "planner reads a .dockerignore of at most {MAX_FILE_BYTES} bytes: shorten it in \
                 the repository"
            ),
        }
    }
}

/// The parsed patterns of one `.dockerignore`, in file order.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// One pattern: whether it is an exception (`!…`), its cleaned text (without the `!`), how
/// many `/`-separated parts that has, its line, and how it matches.
#[derive(Debug, Clone)]
struct Pattern {
    exception: bool,
    text: String,
    dirs: usize,
    line: usize,
    matcher: Matcher,
}

/// moby's match kinds: literal patterns avoid regexes, `**` at either end is a prefix or
/// suffix test, anything else is an anchored regex; `Bad` is a regex that does not compile
/// (an error when a path reaches it, as in moby).
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
    Bad(String),
}

/// Which patterns matched a directory (moby's `MatchInfo`), for matching its children with
/// [`DockerIgnore::matches_using_parent`]. One bit per pattern.
#[derive(Debug, Clone, Default)]
pub struct MatchInfo(Vec<u64>);

impl MatchInfo {
    fn sized(patterns: usize) -> Self {
        MatchInfo(vec![0; patterns.div_ceil(64)])
    }

    fn get(&self, at: usize) -> bool {
        self.0
            .get(at / 64)
            .is_some_and(|w| w & (1 << (at % 64)) != 0)
    }

    fn set(&mut self, at: usize) {
        self.0[at / 64] |= 1 << (at % 64);
    }
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore`, within the bounds of this module (the file's size,
    /// [`MAX_FILE_BYTES`], is the reader's to check: see [`IgnoreError::TooLarge`]).
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        let mut wildcards = 0;
        for (index, raw) in text.lines().enumerate() {
            let raw = match raw.strip_prefix('\u{feff}') {
                Some(rest) if index == 0 => rest,
                _ => raw,
            };
            let Some(entry) = read_line(raw) else {
                continue;
            };
            if patterns.len() == MAX_PATTERNS {
                return Err(IgnoreError::TooManyPatterns { line: index + 1 });
            }
            let (pattern, used) =
                Pattern::new(&entry, index + 1).map_err(|message| IgnoreError::Pattern {
                    line: index + 1,
                    message,
                })?;
            wildcards += used;
            if wildcards > MAX_WILDCARDS {
                return Err(IgnoreError::TooManyWildcards { line: index + 1 });
            }
            patterns.push(pattern);
        }
        Ok(DockerIgnore { patterns })
    }

    /// `patternmatcher.New` over patterns already read (what BuildKit sends the client that
    /// serves its build context: the lines of the ignore file it read, cleaned), within the
    /// bounds of this module. Blank entries are skipped; errors name the entry by its number
    /// (as `line`), counting from 1.
    pub fn from_patterns<S: AsRef<str>>(entries: &[S]) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        let mut wildcards = 0;
        for (index, entry) in entries.iter().enumerate() {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            if patterns.len() == MAX_PATTERNS {
                return Err(IgnoreError::TooManyPatterns { line: index + 1 });
            }
            let (pattern, used) =
                Pattern::new(entry, index + 1).map_err(|message| IgnoreError::Pattern {
                    line: index + 1,
                    message,
                })?;
            wildcards += used;
            if wildcards > MAX_WILDCARDS {
                return Err(IgnoreError::TooManyWildcards { line: index + 1 });
            }
            patterns.push(pattern);
        }
        Ok(DockerIgnore { patterns })
    }

    /// Each pattern as moby's `Pattern.String()` gives it (cleaned, without its `!`), and
    /// whether it is an exception.
    pub fn texts(&self) -> impl Iterator<Item = (bool, &str)> {
        self.patterns.iter().map(|p| (p.exception, p.text.as_str()))
    }

    /// moby's `MatchesOrParentMatches` (the docker CLI's context check): whether `rel`
    /// (relative to the context root, `/`-separated, no leading `./` or `/`) is left out: the
    /// last pattern matching it or one of its parent directories decides, exceptions
    /// re-include. An error when `rel` reaches a pattern that does not compile.
    pub fn is_excluded(&self, rel: &str) -> Result<bool, IgnoreError> {
        if rel.is_empty() || rel == "." {
            return Ok(false);
        }
        let parents: Vec<&str> = rel.match_indices('/').map(|(at, _)| &rel[..at]).collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Like moby: an exclusion only matters while excluded, a pattern only while not.
            if pattern.exception != excluded {
                continue;
            }
            if pattern.matches(rel)? || parents.iter().any(|dir| pattern.matches_quietly(dir)) {
                excluded = !pattern.exception;
            }
        }
        Ok(excluded)
    }

    /// moby's deprecated `Matches`, which the docker CLI still uses to decide whether the
    /// Dockerfile and `.dockerignore` need an exception: a parent is checked only at the depth
    /// of the pattern's own number of parts. Errors count as no match, as the CLI ignores them.
    pub fn matches_at_pattern_depth(&self, rel: &str) -> bool {
        let rel = clean_path(rel);
        if rel == "." {
            return false;
        }
        let parents: Vec<&str> = match rel.rsplit_once('/') {
            Some((parent, _)) => parent.split('/').collect(),
            None => Vec::new(),
        };
        let mut excluded = false;
        for pattern in &self.patterns {
            if pattern.exception != excluded {
                continue;
            }
            let Ok(mut hit) = pattern.matches(&rel) else {
                return false;
            };
            if !hit && !parents.is_empty() && pattern.dirs <= parents.len() {
                hit = pattern.matches_quietly(&parents[..pattern.dirs].join("/"));
            }
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// moby's `MatchesUsingParentResults` (the docker CLI's tar walk): whether `rel` is left
    /// out, given what matched its parent directory (`None` for a top-level path), and what
    /// matched `rel`, for its children. A pattern that matched the parent holds for the child
    /// whatever came before it, so `docs`, `!docs/README.md`, `docs` keeps `docs/README.md`.
    pub fn matches_using_parent(
        &self,
        rel: &str,
        parent: Option<&MatchInfo>,
    ) -> Result<(bool, MatchInfo), IgnoreError> {
        let mut info = MatchInfo::sized(self.patterns.len());
        let mut excluded = false;
        for (at, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|p| p.get(at));
            if !hit {
                if pattern.exception != excluded {
                    continue;
                }
                hit = pattern.matches(rel)?;
                if !hit && parent.is_none() {
                    hit = rel
                        .match_indices('/')
                        .any(|(end, _)| pattern.matches_quietly(&rel[..end]));
                }
            }
            if hit {
                info.set(at);
                excluded = !pattern.exception;
            }
        }
        Ok((excluded, info))
    }

    /// Whether the docker CLI's tar walk enters the excluded directory `dir`: only when some
    /// exception's text starts with `dir/` (so `!*/keep.txt` does not open `a/`).
    pub fn enters_excluded_dir(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exception && format!("{}/", p.text).starts_with(&prefix))
    }

    /// Appends the exception `!path`, as the docker CLI does for the Dockerfile and
    /// `.dockerignore` when the patterns exclude them (the path as it is, like the CLI).
    pub fn push_exception(&mut self, path: &str) {
        let line = self.patterns.last().map_or(0, |p| p.line);
        if let Ok((pattern, _)) = Pattern::new(&format!("!{path}"), line) {
            self.patterns.push(pattern);
        }
    }

    /// True when some pattern fails to compile: walkers must then check, as the docker CLI
    /// does before sending anything, whether a path reaches it.
    pub fn has_unmatchable(&self) -> bool {
        self.patterns
            .iter()
            .any(|p| matches!(p.matcher, Matcher::Bad(_)))
    }

    /// True when some exception pattern (`!…`) exists.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

/// `ignorefile.ReadAll` for one line: `None` for comments and blank lines, otherwise the
/// trimmed, cleaned pattern, still carrying its `!` prefix.
fn read_line(raw: &str) -> Option<String> {
    if raw.starts_with('#') {
        return None;
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let (invert, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut cleaned = String::new();
    if !body.is_empty() {
        cleaned = clean_path(body);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
    }
    Some(if invert {
        format!("!{cleaned}")
    } else {
        cleaned
    })
}

/// Go's `filepath.Clean` for `/`-separated paths: collapses `//`, drops `.` segments, resolves
/// `..` lexically, removes trailing slashes; `""` becomes `"."`. `path-clean` ports Go's
/// algorithm; it agrees with a line-by-line port of Go's on every path of up to 9 characters
/// over `a`, `.`, `/`, `\\` (checked when it replaced that port) and on the table below.
pub(crate) fn clean_path(path: &str) -> String {
    path_clean::clean(path).to_string_lossy().into_owned()
}

impl Pattern {
    /// `patternmatcher.New` for one entry produced by [`read_line`], and its wildcard count.
    fn new(entry: &str, line: usize) -> Result<(Self, usize), String> {
        if entry.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "pattern {} is {} bytes long, over the limit of {MAX_PATTERN_BYTES} bytes",
                quote(entry),
                entry.len()
            ));
        }
        let cleaned = clean_path(entry.trim());
        let (exception, body) = match cleaned.strip_prefix('!') {
            Some("") => return Err("illegal exclusion pattern: \"!\"".to_owned()),
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        let (matcher, wildcards) =
            compile(body).map_err(|why| format!("bad pattern {}: {why}", quote(body)))?;
        let pattern = Pattern {
            exception,
            text: body.to_owned(),
            dirs: body.split('/').count(),
            line,
            matcher,
        };
        Ok((pattern, wildcards))
    }

    /// Whether the pattern matches `path`; an error when it does not compile.
    fn matches(&self, path: &str) -> Result<bool, IgnoreError> {
        Ok(match &self.matcher {
            Matcher::Exact(literal) => path == literal,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Matcher::Regex(re) => re.is_match(path),
            Matcher::Bad(message) => {
                return Err(IgnoreError::Unmatchable {
                    line: self.line,
                    pattern: quote(&self.text),
                    path: path.to_owned(),
                    message: message.clone(),
                });
            }
        })
    }

    /// [`Pattern::matches`] for parent directories, where moby drops the error.
    fn matches_quietly(&self, path: &str) -> bool {
        self.matches(path).unwrap_or(false)
    }
}

/// How far [`compile`] has narrowed the match kind (moby's `detectedType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// Characters moby escapes before handing the text to Go's regexp.
const MOBY_ESCAPED: &str = ".+()|{}$";

/// Converts a cleaned pattern to a matcher as `patternmatcher.Pattern.compile` does: its
/// `filepath.Match` syntax is checked first (an error refuses the file), then moby's regex text
/// is read as Go reads it ([`goregex`]); text Go cannot compile becomes [`Matcher::Bad`].
/// Also returns how many wildcards its regex holds.
fn compile(pattern: &str) -> Result<(Matcher, usize), String> {
    check_glob(pattern)?;
    let (go, kind) = moby_regex(pattern);
    Ok(match kind {
        Kind::Exact => (Matcher::Exact(pattern.to_owned()), 0),
        Kind::Prefix => (Matcher::Prefix(strip_chars(pattern, 0, 2)), 0),
        Kind::Suffix => (Matcher::Suffix(strip_chars(pattern, 2, 0)), 0),
        Kind::Regex => match goregex::translate(&go) {
            Ok(t) => (Matcher::Regex(build_regex(&t.text)?), t.wildcards),
            Err(go_error) => (Matcher::Bad(go_error), 0),
        },
    })
}

/// moby's regex text for a pattern (Go syntax) and its match kind, character for character.
fn moby_regex(pattern: &str) -> (String, Kind) {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut at = 0;
    while at < chars.len() {
        let first = at == 0;
        let ch = chars[at];
        at += 1;
        match ch {
            '*' if chars.get(at) == Some(&'*') => {
                at += 1;
                if chars.get(at) == Some(&'/') {
                    at += 1;
                }
                if at < chars.len() {
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                } else if kind == Kind::Exact {
                    kind = Kind::Prefix;
                } else {
                    re.push_str(".*");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            c if MOBY_ESCAPED.contains(c) => {
                re.push('\\');
                re.push(c);
            }
            '\\' => {
                re.push('\\');
                if let Some(&next) = chars.get(at) {
                    re.push(next);
                    at += 1;
                    kind = Kind::Regex;
                }
            }
            '[' | ']' => {
                re.push(ch);
                kind = Kind::Regex;
            }
            other => re.push(other),
        }
    }
    if kind == Kind::Regex {
        re.push('$');
    }
    (re, kind)
}

/// The syntax errors of Go's `filepath.Match`, which moby checks when reading the file: bad
/// classes (`[`, `[]`, `[a-]`) and a trailing `\`. A reversed range (`[z-a]`) is not one.
fn check_glob(pattern: &str) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut at = 0;
    while at < chars.len() {
        let ch = chars[at];
        at += 1;
        match ch {
            '\\' => {
                chars.get(at).ok_or("trailing backslash")?;
                at += 1;
            }
            '[' => at = check_class(&chars, at)?,
            _ => {}
        }
    }
    Ok(())
}

/// Compiles a pattern's regex within [`REGEX_SIZE_LIMIT`] (and its lazy DFA's cache within
/// [`DFA_CACHE_LIMIT`]; past it the regex crate falls back to its linear-time NFA simulation).
fn build_regex(re: &str) -> Result<Regex, String> {
    RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_CACHE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => {
                format!("too complex: its compiled form exceeds the limit of {limit} bytes")
            }
            other => other.to_string(),
        })
}

/// A pattern for an error message: quoted, and cut after [`QUOTED_CHARS`] characters.
fn quote(pattern: &str) -> String {
    match pattern.char_indices().nth(QUOTED_CHARS) {
        Some((at, _)) => format!("{:?}…", &pattern[..at]),
        None => format!("{pattern:?}"),
    }
}

/// `pattern` without `front` leading and `back` trailing characters (both ASCII `*` here).
fn strip_chars(pattern: &str, front: usize, back: usize) -> String {
    pattern[front..pattern.len() - back].to_owned()
}

/// Checks a `filepath.Match` character class; `at` is just past the `[`. Returns the index
/// after the closing `]`.
fn check_class(chars: &[char], mut at: usize) -> Result<usize, String> {
    if chars.get(at) == Some(&'^') {
        at += 1;
    }
    let mut ranges = 0;
    loop {
        if chars.get(at) == Some(&']') && ranges > 0 {
            return Ok(at + 1);
        }
        class_char(chars, &mut at)?;
        if chars.get(at) == Some(&'-') {
            at += 1;
            class_char(chars, &mut at)?;
        }
        ranges += 1;
    }
}

/// Go's `getEsc`: one (possibly `\`-escaped) class character, which must not be an unescaped
/// `-` or `]` and must not end the pattern.
fn class_char(chars: &[char], at: &mut usize) -> Result<char, String> {
    const BAD: &str = "malformed character class";
    let mut ch = *chars.get(*at).ok_or(BAD)?;
    if ch == '-' || ch == ']' {
        return Err(BAD.to_owned());
    }
    if ch == '\\' {
        *at += 1;
        ch = *chars.get(*at).ok_or(BAD)?;
    }
    *at += 1;
    if *at >= chars.len() {
        return Err(BAD.to_owned());
    }
    Ok(ch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    fn excluded(text: &str, path: &str) -> bool {
        ignore(text).is_excluded(path).unwrap()
    }

    fn error_line(text: &str) -> usize {
        match DockerIgnore::parse(text) {
            Err(IgnoreError::Pattern { line, .. }) => line,
            other => panic!("{text:?} should be a pattern error: {other:?}"),
        }
    }

    #[test]
    fn comment_lines_are_ignored() {
        let ig = ignore("# comment\n");
        assert!(!ig.is_excluded("# comment").unwrap());
        assert!(!ig.is_excluded("comment").unwrap());
        assert!(ig.patterns.is_empty());
    }

    #[test]
    fn hash_is_a_comment_only_as_first_character() {
        // The docker CLI trims after the comment check: " #x" is the pattern "#x".
        assert!(excluded("  #x\n", "#x"));
        assert!(excluded("\\#y\n", "#y"));
    }

    #[test]
    fn star_then_temp_excludes_one_level_down() {
        let text = "*/temp*";
        assert!(excluded(text, "somedir/temporary.txt"));
        assert!(excluded(text, "somedir/temp"));
        assert!(excluded(text, "somedir/temp/inner.txt"));
        assert!(!excluded(text, "temp"));
        assert!(!excluded(text, "temporary.txt"));
        assert!(!excluded(text, "somedir/subdir/temporary.txt"));
    }

    #[test]
    fn two_stars_then_temp_excludes_two_levels_down() {
        let text = "*/*/temp*";
        assert!(excluded(text, "somedir/subdir/temporary.txt"));
        assert!(!excluded(text, "somedir/temporary.txt"));
        assert!(!excluded(text, "a/b/c/temp"));
    }

    #[test]
    fn question_mark_is_one_character() {
        let text = "temp?";
        assert!(excluded(text, "tempa"));
        assert!(excluded(text, "tempb"));
        assert!(!excluded(text, "temp"));
        assert!(!excluded(text, "tempab"));
        assert!(!excluded(text, "temp/"));
        assert!(!excluded(text, "dir/tempa"));
    }

    #[test]
    fn double_star_matches_any_depth() {
        let text = "**/*.go";
        assert!(excluded(text, "main.go"));
        assert!(excluded(text, "cmd/app/main.go"));
        assert!(!excluded(text, "main.gox"));
        let middle = ignore("a/**/b");
        assert!(middle.is_excluded("a/b").unwrap());
        assert!(middle.is_excluded("a/x/y/b").unwrap());
        assert!(!middle.is_excluded("a/xb").unwrap());
    }

    #[test]
    fn trailing_double_star_matches_everything_below() {
        let ig = ignore("dist/**");
        assert!(ig.is_excluded("dist/a").unwrap());
        assert!(ig.is_excluded("dist/a/b/c").unwrap());
        assert!(!ig.is_excluded("distx").unwrap());
        assert!(excluded("**", "anything/at/all"));
    }

    #[test]
    fn leading_double_star_without_slash_is_a_suffix_test() {
        // moby's suffix match: "**foo" matches any path ending in "foo".
        let ig = ignore("**foo");
        assert!(ig.is_excluded("foo").unwrap());
        assert!(ig.is_excluded("barfoo").unwrap());
        assert!(ig.is_excluded("a/barfoo").unwrap());
        assert!(!ig.is_excluded("foobar").unwrap());
        let slash = ignore("**/foo");
        assert!(slash.is_excluded("foo").unwrap());
        assert!(slash.is_excluded("a/b/foo").unwrap());
        assert!(!slash.is_excluded("barfoo").unwrap());
    }

    #[test]
    fn exception_re_includes_readme() {
        let text = "*.md\n!README.md\n";
        assert!(excluded(text, "CHANGES.md"));
        assert!(!excluded(text, "README.md"));
        assert!(ignore(text).has_exceptions());
        assert!(!ignore("*.md").has_exceptions());
    }

    #[test]
    fn later_pattern_re_excludes_after_exception() {
        let text = "*.md\n!README*.md\nREADME-secret.md\n";
        assert!(excluded(text, "README-secret.md"));
        assert!(!excluded(text, "README-public.md"));
        assert!(!excluded(text, "README.md"));
        assert!(excluded(text, "other.md"));
    }

    #[test]
    fn later_exception_wins_over_earlier_pattern() {
        let text = "*.md\nREADME-secret.md\n!README*.md\n";
        assert!(!excluded(text, "README-secret.md"));
        assert!(!excluded(text, "README.md"));
        assert!(excluded(text, "other.md"));
    }

    #[test]
    fn leading_slash_is_relative_to_the_root() {
        let ig = ignore("/foo\n!/foo/keep\n");
        assert!(ig.is_excluded("foo").unwrap());
        assert!(ig.is_excluded("foo/bar").unwrap());
        assert!(!ig.is_excluded("foo/keep").unwrap());
        assert!(!ig.is_excluded("x/foo").unwrap());
    }

    #[test]
    fn patterns_are_cleaned() {
        let ig = ignore("foo/../bar\n./baz\na//b/\nc/./d\n/../e\n");
        assert!(ig.is_excluded("bar").unwrap());
        assert!(!ig.is_excluded("foo").unwrap());
        assert!(ig.is_excluded("baz").unwrap());
        assert!(ig.is_excluded("a/b").unwrap());
        assert!(ig.is_excluded("c/d").unwrap());
        assert!(ig.is_excluded("e").unwrap());
    }

    #[test]
    fn clean_path_follows_go() {
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path("../a/./b/"), "../a/b");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("//"), "/");
        assert_eq!(clean_path("//a//b/../c/."), "/a/c");
        assert_eq!(clean_path("a/.."), ".");
        assert_eq!(clean_path("!x/../y"), "y");
        assert_eq!(clean_path("a\\b/.."), ".");
    }

    #[test]
    fn directory_exclusion_applies_to_children() {
        let ig = ignore("node_modules\n");
        assert!(ig.is_excluded("node_modules").unwrap());
        assert!(ig.is_excluded("node_modules/a").unwrap());
        assert!(ig.is_excluded("node_modules/a/b").unwrap());
        assert!(!ig.is_excluded("src/node_modules").unwrap());
        assert!(!ig.is_excluded("node_modules2").unwrap());
    }

    #[test]
    fn exception_inside_an_excluded_directory() {
        let ig = ignore("build\n!build/keep.txt\n");
        assert!(ig.is_excluded("build").unwrap());
        assert!(ig.is_excluded("build/other.txt").unwrap());
        assert!(!ig.is_excluded("build/keep.txt").unwrap());
        assert!(ig.has_exceptions());
    }

    #[test]
    fn exception_for_a_directory_re_includes_its_children() {
        let ig = ignore("*\n!src\n");
        assert!(ig.is_excluded("README").unwrap());
        assert!(!ig.is_excluded("src").unwrap());
        assert!(!ig.is_excluded("src/deep/file.rs").unwrap());
    }

    #[test]
    fn character_classes() {
        let ig = ignore("file[0-9].txt\n");
        assert!(ig.is_excluded("file1.txt").unwrap());
        assert!(!ig.is_excluded("filea.txt").unwrap());
        assert!(!ig.is_excluded("file10.txt").unwrap());
        let negated = ignore("log[^ab]\n");
        assert!(negated.is_excluded("logc").unwrap());
        assert!(!negated.is_excluded("loga").unwrap());
        // As in Go's filepath.Match, `!` does not negate a class; it is a member.
        let bang = ignore("x[!a]\n");
        assert!(bang.is_excluded("x!").unwrap());
        assert!(bang.is_excluded("xa").unwrap());
        assert!(!bang.is_excluded("xb").unwrap());
        // Docker hands `[` and `]` to Go's regexp and turns the `*` into `[^/]*` first:
        // `^y[\.[^/]*\]]$` is any run of `.`, `[`, `^`, `/`, then `]]`.
        let special = ignore("y[.*\\]]\n");
        assert!(special.is_excluded("y]]").unwrap());
        assert!(special.is_excluded("y.]]").unwrap());
        assert!(special.is_excluded("y.[^]]").unwrap());
        assert!(!special.is_excluded("y.abc]]").unwrap());
        assert!(!special.is_excluded("y.").unwrap());
        assert!(!special.is_excluded("y]").unwrap());
        assert!(!special.is_excluded("yz]]").unwrap());
    }

    #[test]
    fn backslash_escapes_the_next_character() {
        let ig = ignore("\\*.txt\nq\\?\n\\!bang\n");
        assert!(ig.is_excluded("*.txt").unwrap());
        assert!(!ig.is_excluded("a.txt").unwrap());
        assert!(ig.is_excluded("q?").unwrap());
        assert!(!ig.is_excluded("qa").unwrap());
        assert!(ig.is_excluded("!bang").unwrap());
        assert!(!ig.has_exceptions());
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        let ig = ignore("a.b+(c)|{d}$*\n");
        assert!(ig.is_excluded("a.b+(c)|{d}$").unwrap());
        assert!(ig.is_excluded("a.b+(c)|{d}$zz").unwrap());
        assert!(!ig.is_excluded("axb+(c)|{d}$").unwrap());
    }

    #[test]
    fn whitespace_bom_and_exception_spacing() {
        let ig = ignore("\u{feff}first\n   spaced.txt   \r\n!  spaced.txt\n\n\t\n");
        assert!(ig.is_excluded("first").unwrap());
        assert!(!ig.is_excluded("spaced.txt").unwrap());
        assert_eq!(ig.patterns.len(), 3);
    }

    #[test]
    fn malformed_patterns_are_errors_with_line_numbers() {
        assert_eq!(error_line("ok\n!\n"), 2);
        assert_eq!(error_line("!   \n"), 1);
        assert_eq!(error_line("# c\n\nfoo[\n"), 3);
        assert_eq!(error_line("a\\"), 1);
        assert_eq!(error_line("[]"), 1);
        assert_eq!(error_line("[a-]"), 1);
        let err = DockerIgnore::parse("x\n!").unwrap_err();
        assert_eq!(err.to_string(), "line 2: illegal exclusion pattern: \"!\"");
    }

    /// A 45-byte path, as in the report of the `**` blow-up.
    const PATH_45: &str = "src/components/widgets/deeply/nested/file.txt";

    #[test]
    fn long_runs_of_stars_finish_with_an_answer_or_a_clear_error() {
        assert_eq!(PATH_45.len(), 45);
        // Each `**` was a capture group: 5,000 stars took 4 s and 2.5 GB, 8,000 aborted.
        for n in [5_000, 8_000] {
            let err = DockerIgnore::parse(&"*".repeat(n)).unwrap_err().to_string();
            assert!(err.starts_with("line 1: pattern \"****"), "{err}");
            assert!(
                err.contains(&format!("is {n} bytes long, over the limit of 4096 bytes")),
                "{err}"
            );
            assert!(err.len() < 200, "the pattern is quoted short: {err}");
        }
        // Within the length limit, long runs compile and answer like shorter ones.
        for text in ["*".repeat(4096), "**/".repeat(1365)] {
            let short = ignore(&text[..text.len().min(6)]);
            let long = ignore(&text);
            for path in [PATH_45, "a", "aaaa/b", "x/y"] {
                let want = short.is_excluded(path).unwrap();
                assert_eq!(
                    long.is_excluded(path).unwrap(),
                    want,
                    "{path} with {}…",
                    &text[..6]
                );
            }
        }
        assert!(ignore(&"*".repeat(4096)).is_excluded(PATH_45).unwrap());
        let many = ignore(&"a*".repeat(500));
        assert!(many.is_excluded(&"a".repeat(500)).unwrap());
        assert!(many.is_excluded(&"ab".repeat(500)).unwrap());
        assert!(!many.is_excluded(&"a".repeat(499)).unwrap());
    }

    #[test]
    fn double_star_regexes_have_no_capture_groups() {
        let ig = ignore("a/**/b/**/c");
        let Matcher::Regex(re) = &ig.patterns[0].matcher else {
            panic!("a regex");
        };
        assert_eq!(re.captures_len(), 1, "only the implicit whole-match group");
        assert!(ig.is_excluded("a/x/b/y/z/c").unwrap());
    }

    #[test]
    fn regexes_beyond_the_size_limit_are_a_clear_error() {
        // About 1 KiB compiled per `?` (a Unicode class): 1,100 of them are over 1 MiB.
        let err = DockerIgnore::parse(&format!("ok\n{}\n", "?".repeat(1100))).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("line 2: bad pattern \"???"),
            "{message}"
        );
        assert!(
            message.contains("too complex: its compiled form exceeds the limit of 1048576 bytes"),
            "{message}"
        );
        assert!(err.help().contains("line 2 of .dockerignore"));
    }

    #[test]
    fn wildcards_of_the_whole_file_are_bounded() {
        let line = "*a".repeat(100);
        let at_limit = format!("{line}\n").repeat(MAX_WILDCARDS / 100);
        assert!(DockerIgnore::parse(&at_limit).is_ok());
        let err = DockerIgnore::parse(&format!("{at_limit}x?\n")).unwrap_err();
        assert!(matches!(err, IgnoreError::TooManyWildcards { line } if line == 201));
        assert!(
            err.to_string().contains("more than 20000 wildcards"),
            "{err}"
        );
        // A collapsed run counts once: 2,000 × 11 would be over the limit.
        let ig = ignore(&format!("{}/a\n", "*".repeat(4000)).repeat(11));
        assert!(ig.is_excluded("x/y/a").unwrap());
    }

    #[test]
    fn pattern_count_is_bounded() {
        let at_limit = "p\n".repeat(MAX_PATTERNS);
        assert_eq!(ignore(&at_limit).patterns.len(), MAX_PATTERNS);
        let over = format!("# comment\n{at_limit}\n\nq\n");
        let err = DockerIgnore::parse(&over).unwrap_err();
        assert!(matches!(err, IgnoreError::TooManyPatterns { line } if line == MAX_PATTERNS + 4));
        assert!(
            err.to_string().contains("more than 10000 patterns"),
            "{err}"
        );
        // Comments and blank lines cost no pattern (the file's size is bounded by its reader).
        assert!(DockerIgnore::parse(&"#\n\n".repeat(MAX_PATTERNS * 2)).is_ok());
    }

    #[test]
    fn empty_and_root_paths_are_never_excluded() {
        let ig = ignore("*\n");
        assert!(!ig.is_excluded("").unwrap());
        assert!(!ig.is_excluded(".").unwrap());
        assert!(ig.is_excluded("anything").unwrap());
        assert!(!DockerIgnore::default().is_excluded("anything").unwrap());
    }
}
