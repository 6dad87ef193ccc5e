//! `.dockerignore` with Docker's semantics: reading the file the way the docker CLI does
//! (`moby/patternmatcher/ignorefile.ReadAll`) and matching paths the way
//! `moby/patternmatcher` does (`MatchesOrParentMatches`). This module owns the parsing and the
//! matching; walking a directory tree is [`crate::docker::context`]'s job.

use regex::Regex;

/// A `.dockerignore` line that Docker would reject.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("line {line}: {message}")]
    Pattern { line: usize, message: String },
}

/// The parsed patterns of one `.dockerignore`, in file order.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// One pattern: whether it is an exception (`!…`) and how it matches.
#[derive(Debug, Clone)]
struct Pattern {
    exception: bool,
    matcher: Matcher,
}

/// moby's match kinds: literal patterns avoid regexes, `**` at either end is a prefix or
/// suffix test, anything else is an anchored regex.
#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let raw = match raw.strip_prefix('\u{feff}') {
                Some(rest) if index == 0 => rest,
                _ => raw,
            };
            let Some(entry) = read_line(raw) else {
                continue;
            };
            let pattern = Pattern::new(&entry).map_err(|message| IgnoreError::Pattern {
                line: index + 1,
                message,
            })?;
            patterns.push(pattern);
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether `rel` (relative to the context root, `/`-separated, no leading `./` or `/`) is
    /// left out of the context: the last pattern matching it or one of its parent directories
    /// decides, and exceptions re-include.
    pub fn is_excluded(&self, rel: &str) -> bool {
        if rel.is_empty() || rel == "." {
            return false;
        }
        let parents: Vec<&str> = rel.match_indices('/').map(|(at, _)| &rel[..at]).collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Like moby: an exclusion only matters while excluded, a pattern only while not.
            if pattern.exception != excluded {
                continue;
            }
            if pattern.matches(rel) || parents.iter().any(|dir| pattern.matches(dir)) {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// True when some exception pattern (`!…`) exists (walkers must then descend into excluded dirs).
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
/// `..` lexically, removes trailing slashes; `""` becomes `"."`.
pub(crate) fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

impl Pattern {
    /// `patternmatcher.New` for one entry produced by [`read_line`].
    fn new(entry: &str) -> Result<Self, String> {
        let cleaned = clean_path(entry.trim());
        let (exception, body) = match cleaned.strip_prefix('!') {
            Some("") => return Err("illegal exclusion pattern: \"!\"".to_owned()),
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        let matcher = compile(body).map_err(|why| format!("bad pattern {body:?}: {why}"))?;
        Ok(Pattern { exception, matcher })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(literal) => path == literal,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Matcher::Regex(re) => re.is_match(path),
        }
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

/// Converts a cleaned pattern to a matcher as `patternmatcher.Pattern.compile` does, with
/// character classes and escapes following `filepath.Match` (whose syntax errors it reports).
fn compile(pattern: &str) -> Result<Matcher, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let mut at = 0;
    while at < chars.len() {
        let start = at;
        let ch = chars[at];
        at += 1;
        match ch {
            '*' if chars.get(at) == Some(&'*') => {
                at = double_star(&chars, at + 1, &mut re, &mut kind);
                if start == 0 {
                    kind = Kind::Suffix;
                }
            }
            '*' => push_wildcard(&mut re, &mut kind, "[^/]*"),
            '?' => push_wildcard(&mut re, &mut kind, "[^/]"),
            '\\' => {
                let escaped = chars.get(at).ok_or("trailing backslash")?;
                at += 1;
                re.push_str(&regex::escape(&escaped.to_string()));
                kind = Kind::Regex;
            }
            '[' => {
                let (class, next) = char_class(&chars, at)?;
                at = next;
                push_wildcard(&mut re, &mut kind, &class);
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
    }
    finish(pattern, re, kind)
}

fn push_wildcard(re: &mut String, kind: &mut Kind, piece: &str) {
    re.push_str(piece);
    *kind = Kind::Regex;
}

/// Handles a `**` whose second star was just consumed; `at` is the index after it.
/// Returns the index after the `**` (and its `/`, which is eaten).
fn double_star(chars: &[char], mut at: usize, re: &mut String, kind: &mut Kind) -> usize {
    if chars.get(at) == Some(&'/') {
        at += 1;
    }
    if at < chars.len() {
        push_wildcard(re, kind, "(.*/)?");
    } else if *kind == Kind::Exact {
        *kind = Kind::Prefix;
    } else {
        push_wildcard(re, kind, ".*");
    }
    at
}

fn finish(pattern: &str, mut re: String, kind: Kind) -> Result<Matcher, String> {
    Ok(match kind {
        Kind::Exact => Matcher::Exact(pattern.to_owned()),
        Kind::Prefix => Matcher::Prefix(strip_chars(pattern, 0, 2)),
        Kind::Suffix => Matcher::Suffix(strip_chars(pattern, 2, 0)),
        Kind::Regex => {
            re.push('$');
            Matcher::Regex(Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

/// `pattern` without `front` leading and `back` trailing characters (both ASCII `*` here).
fn strip_chars(pattern: &str, front: usize, back: usize) -> String {
    pattern[front..pattern.len() - back].to_owned()
}

/// Parses a `filepath.Match` character class; `at` is just past the `[`. Returns the
/// equivalent regex class and the index after the closing `]`.
fn char_class(chars: &[char], mut at: usize) -> Result<(String, usize), String> {
    let mut class = String::from("[");
    if chars.get(at) == Some(&'^') {
        class.push('^');
        at += 1;
    }
    let mut ranges = 0;
    loop {
        if chars.get(at) == Some(&']') && ranges > 0 {
            class.push(']');
            return Ok((class, at + 1));
        }
        let lo = class_char(chars, &mut at)?;
        let mut hi = lo;
        if chars.get(at) == Some(&'-') {
            at += 1;
            hi = class_char(chars, &mut at)?;
        }
        if lo > hi {
            return Err(format!("invalid character class range {lo}-{hi}"));
        }
        class.push_str(&regex::escape(&lo.to_string()));
        if hi != lo {
            class.push('-');
            class.push_str(&regex::escape(&hi.to_string()));
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
        ignore(text).is_excluded(path)
    }

    fn error_line(text: &str) -> usize {
        match DockerIgnore::parse(text) {
            Err(IgnoreError::Pattern { line, .. }) => line,
            Ok(_) => panic!("{text:?} should not parse"),
        }
    }

    #[test]
    fn comment_lines_are_ignored() {
        let ig = ignore("# comment\n");
        assert!(!ig.is_excluded("# comment"));
        assert!(!ig.is_excluded("comment"));
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
        assert!(middle.is_excluded("a/b"));
        assert!(middle.is_excluded("a/x/y/b"));
        assert!(!middle.is_excluded("a/xb"));
    }

    #[test]
    fn trailing_double_star_matches_everything_below() {
        let ig = ignore("dist/**");
        assert!(ig.is_excluded("dist/a"));
        assert!(ig.is_excluded("dist/a/b/c"));
        assert!(!ig.is_excluded("distx"));
        assert!(excluded("**", "anything/at/all"));
    }

    #[test]
    fn leading_double_star_without_slash_is_a_suffix_test() {
        // moby's suffix match: "**foo" matches any path ending in "foo".
        let ig = ignore("**foo");
        assert!(ig.is_excluded("foo"));
        assert!(ig.is_excluded("barfoo"));
        assert!(ig.is_excluded("a/barfoo"));
        assert!(!ig.is_excluded("foobar"));
        let slash = ignore("**/foo");
        assert!(slash.is_excluded("foo"));
        assert!(slash.is_excluded("a/b/foo"));
        assert!(!slash.is_excluded("barfoo"));
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
        assert!(ig.is_excluded("foo"));
        assert!(ig.is_excluded("foo/bar"));
        assert!(!ig.is_excluded("foo/keep"));
        assert!(!ig.is_excluded("x/foo"));
    }

    #[test]
    fn patterns_are_cleaned() {
        let ig = ignore("foo/../bar\n./baz\na//b/\nc/./d\n/../e\n");
        assert!(ig.is_excluded("bar"));
        assert!(!ig.is_excluded("foo"));
        assert!(ig.is_excluded("baz"));
        assert!(ig.is_excluded("a/b"));
        assert!(ig.is_excluded("c/d"));
        assert!(ig.is_excluded("e"));
    }

    #[test]
    fn clean_path_follows_go() {
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path("../a/./b/"), "../a/b");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("//"), "/");
    }

    #[test]
    fn directory_exclusion_applies_to_children() {
        let ig = ignore("node_modules\n");
        assert!(ig.is_excluded("node_modules"));
        assert!(ig.is_excluded("node_modules/a"));
        assert!(ig.is_excluded("node_modules/a/b"));
        assert!(!ig.is_excluded("src/node_modules"));
        assert!(!ig.is_excluded("node_modules2"));
    }

    #[test]
    fn exception_inside_an_excluded_directory() {
        let ig = ignore("build\n!build/keep.txt\n");
        assert!(ig.is_excluded("build"));
        assert!(ig.is_excluded("build/other.txt"));
        assert!(!ig.is_excluded("build/keep.txt"));
        assert!(ig.has_exceptions());
    }

    #[test]
    fn exception_for_a_directory_re_includes_its_children() {
        let ig = ignore("*\n!src\n");
        assert!(ig.is_excluded("README"));
        assert!(!ig.is_excluded("src"));
        assert!(!ig.is_excluded("src/deep/file.rs"));
    }

    #[test]
    fn character_classes() {
        let ig = ignore("file[0-9].txt\n");
        assert!(ig.is_excluded("file1.txt"));
        assert!(!ig.is_excluded("filea.txt"));
        assert!(!ig.is_excluded("file10.txt"));
        let negated = ignore("log[^ab]\n");
        assert!(negated.is_excluded("logc"));
        assert!(!negated.is_excluded("loga"));
        // As in Go's filepath.Match, `!` does not negate a class; it is a member.
        let bang = ignore("x[!a]\n");
        assert!(bang.is_excluded("x!"));
        assert!(bang.is_excluded("xa"));
        assert!(!bang.is_excluded("xb"));
        let special = ignore("y[.*\\]]\n");
        assert!(special.is_excluded("y."));
        assert!(special.is_excluded("y*"));
        assert!(special.is_excluded("y]"));
        assert!(!special.is_excluded("yz"));
    }

    #[test]
    fn backslash_escapes_the_next_character() {
        let ig = ignore("\\*.txt\nq\\?\n\\!bang\n");
        assert!(ig.is_excluded("*.txt"));
        assert!(!ig.is_excluded("a.txt"));
        assert!(ig.is_excluded("q?"));
        assert!(!ig.is_excluded("qa"));
        assert!(ig.is_excluded("!bang"));
        assert!(!ig.has_exceptions());
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        let ig = ignore("a.b+(c)|{d}$*\n");
        assert!(ig.is_excluded("a.b+(c)|{d}$"));
        assert!(ig.is_excluded("a.b+(c)|{d}$zz"));
        assert!(!ig.is_excluded("axb+(c)|{d}$"));
    }

    #[test]
    fn whitespace_bom_and_exception_spacing() {
        let ig = ignore("\u{feff}first\n   spaced.txt   \r\n!  spaced.txt\n\n\t\n");
        assert!(ig.is_excluded("first"));
        assert!(!ig.is_excluded("spaced.txt"));
        assert_eq!(ig.patterns.len(), 3);
    }

    #[test]
    fn malformed_patterns_are_errors_with_line_numbers() {
        assert_eq!(error_line("ok\n!\n"), 2);
        assert_eq!(error_line("!   \n"), 1);
        assert_eq!(error_line("# c\n\nfoo[\n"), 3);
        assert_eq!(error_line("a\\"), 1);
        assert_eq!(error_line("[]"), 1);
        assert_eq!(error_line("[z-a]"), 1);
        assert_eq!(error_line("[a-]"), 1);
        let err = DockerIgnore::parse("x\n!").unwrap_err();
        assert_eq!(err.to_string(), "line 2: illegal exclusion pattern: \"!\"");
    }

    #[test]
    fn empty_and_root_paths_are_never_excluded() {
        let ig = ignore("*\n");
        assert!(!ig.is_excluded(""));
        assert!(!ig.is_excluded("."));
        assert!(ig.is_excluded("anything"));
        assert!(!DockerIgnore::default().is_excluded("anything"));
    }
}
