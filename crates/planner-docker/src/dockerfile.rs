//! What a Dockerfile's FROM lines (and COPY --from images) name: its base images.
//!
//! Pure: text in, references out. Parsed with the `parse-dockerfile` crate (line
//! continuations, comments, parser directives, heredocs); each word is then processed as
//! Docker's shell lexer does ([`lex`]). The semantics are the engine's classic builder's
//! (what planner builds with), plus BuildKit's automatic platform args:
//! - ARGs before the first FROM are the global scope of FROM lines: a declared build arg of
//!   the same name wins over the default; a default may use earlier ARGs; an ARG with neither
//!   is unset (an automatic platform arg keeps its value). A build arg with no ARG before the
//!   first FROM has no effect here.
//! - `FROM` naming an earlier stage (case-insensitive, after substitution) or `scratch` is no
//!   base; `COPY --from` (and BuildKit's `RUN --mount=…,from=`) naming any stage, a stage
//!   index (COPY) or `scratch` is none either; any other name is a base image.

mod lex;

use std::collections::HashSet;

use parse_dockerfile::{Dockerfile, Flag, FromInstruction, Instruction};

use lex::{Env, Lex, LexError, Word};

/// Build args as `runtimes.toml` declares them (`planner_config::BuildArgs`): name → value.
pub type BuildArgs = std::collections::BTreeMap<String, String>;

/// Largest Dockerfile planner accepts, in bytes: `verify-dockerfile` enforces it.
pub const DOCKERFILE_CAP: u64 = 1024 * 1024;
/// Largest Dockerfile accepted: the cap `verify-dockerfile` enforces ([`DOCKERFILE_CAP`]).
pub const MAX_DOCKERFILE_BYTES: usize = DOCKERFILE_CAP as usize;
/// Longest image reference (or platform) accepted after substitution, in bytes.
pub const MAX_REFERENCE_BYTES: usize = 1024;
/// Most distinct base images one Dockerfile may name (each costs a registry request).
pub const MAX_BASE_IMAGES: usize = 256;
/// Most bytes substitution may write for one Dockerfile (a bound on hostile ARG chains).
pub const EXPANSION_BUDGET: usize = 8 * 1024 * 1024;

/// Docker's automatic platform args, set from the build's platform.
const AUTOMATIC_ARGS: [&str; 10] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
];

/// One base image of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BaseRef {
    /// The image reference after ARG substitution, as written (`python:3.11-slim`,
    /// `127.0.0.1:5000/base:1`, `alpine@sha256:…`).
    pub reference: String,
    /// `--platform` after substitution; None when absent or empty (= the build's platform).
    pub platform: Option<String>,
}

/// Why a Dockerfile's base images cannot be told.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    #[error(
        "Dockerfile is {len} bytes, over the {MAX_DOCKERFILE_BYTES} byte limit\n  help: keep the Dockerfile under 1 MiB"
    )]
    TooLarge { len: usize },
    #[error(
        "Dockerfile line {line}: {message}\n  help: fix the Dockerfile in the template repository (`docker build` refuses it too)"
    )]
    Syntax { line: usize, message: String },
    #[error(
        "Dockerfile line {line}: no FROM instruction before {found}\n  help: start the Dockerfile with `FROM <image>` (only ARG, comments and parser directives may come before it)"
    )]
    NoFrom { line: usize, found: String },
    #[error(
        "Dockerfile line {line}: FROM names no image\n  help: write `FROM <image>[:tag] [AS <stage>]`, e.g. `FROM python:3.11-slim`"
    )]
    NoImage { line: usize },
    #[error(
        "Dockerfile line {line}: FROM {written} is empty once build args are substituted{}\n  help: declare the arg in `build_args` for this runtime (or `[defaults]`) in runtimes.toml, or give it a default in an ARG before the first FROM (`ARG NAME=value`)",
        unset_list(.unset)
    )]
    EmptyImage {
        line: usize,
        written: String,
        unset: Vec<String>,
    },
    #[error(
        "Dockerfile line {line}: FROM --platform={written} is empty once build args are substituted{}\n  help: declare the arg in `build_args` for this runtime (or `[defaults]`) in runtimes.toml, give it a default in an ARG before the first FROM, or drop --platform to build for the runtime's platform",
        unset_list(.unset)
    )]
    EmptyPlatform {
        line: usize,
        written: String,
        unset: Vec<String>,
    },
    #[error(
        "Dockerfile line {line}: cannot substitute build args in \"{word}\": {why}\n  help: fix the substitution in the Dockerfile (Docker's forms: $NAME, ${{NAME}}, ${{NAME:-default}}, ${{NAME:+alt}})"
    )]
    Substitution {
        line: usize,
        word: String,
        why: String,
    },
    #[error(
        "Dockerfile line {line}: {what} \"{value}\" uses a variable\n  help: variable expansion is not supported there; define a stage with `FROM` using an ARG from the global scope, and name that stage"
    )]
    VariableFrom {
        line: usize,
        what: &'static str,
        value: String,
    },
    #[error(
        "Dockerfile line {line}: more than {MAX_BASE_IMAGES} distinct base images\n  help: build from fewer base images (planner checks each one's digest every run)"
    )]
    TooManyBases { line: usize },
    #[error(
        "Dockerfile line {line}: {what} \"{shown}\" {problem}\n  help: fix the image reference (or the build arg it is made of)"
    )]
    BadReference {
        line: usize,
        what: &'static str,
        shown: String,
        problem: String,
    },
}

/// `: A, B unset` (or nothing when no name was unset).
fn unset_list(unset: &[String]) -> String {
    if unset.is_empty() {
        String::new()
    } else {
        format!(
            " ({} unset)",
            planner_base::text::list(unset, planner_base::text::LIST_MAX)
        )
    }
}

/// The base images `text` names, deduplicated, in order of appearance.
///
/// `build_args` = the runtime's declared build args; `platform` = the build's platform
/// (`linux/amd64`), for TARGETPLATFORM, TARGETOS, TARGETARCH, … and BUILDPLATFORM, ….
pub fn base_images(
    text: &str,
    build_args: &BuildArgs,
    platform: &str,
) -> Result<Vec<BaseRef>, DockerfileError> {
    if text.len() > MAX_DOCKERFILE_BYTES {
        return Err(DockerfileError::TooLarge { len: text.len() });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = Lines::new(text);
    let file = parse_dockerfile::parse(text).map_err(|e| parse_error(&e, text, &lines))?;
    let escape = file
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);
    let mut lex = Lex::new(escape, EXPANSION_BUDGET);
    let env = global_env(&file, &mut lex, escape, build_args, platform, &lines)?;
    let mut walk = Walk {
        lex,
        escape,
        env,
        lines,
        all_stages: stage_names(&file),
        earlier: HashSet::new(),
        out: Vec::new(),
        seen: HashSet::new(),
    };
    for instruction in &file.instructions {
        walk.instruction(instruction)?;
    }
    Ok(walk.out)
}

/// Line numbers (1-based) of byte offsets.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines(starts)
    }

    fn at(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset).max(1)
    }

    fn last(&self) -> usize {
        self.0.len()
    }
}

/// The crate's error, told as one of ours.
fn parse_error(e: &parse_dockerfile::Error, text: &str, lines: &Lines) -> DockerfileError {
    let message = format!("{e:#}");
    if e.line() == 0 {
        return DockerfileError::NoFrom {
            line: lines.last(),
            found: "the end of the file".into(),
        };
    }
    let line = e.line();
    let keyword = nth_line(text, lines, line)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    if message == "expected FROM" {
        return DockerfileError::NoFrom {
            line,
            found: format!("{}", Shown(&keyword)),
        };
    }
    if keyword.eq_ignore_ascii_case("FROM") && message.ends_with("requires at least one argument") {
        return DockerfileError::NoImage { line };
    }
    DockerfileError::Syntax { line, message }
}

fn nth_line<'t>(text: &'t str, lines: &Lines, line: usize) -> &'t str {
    let start = lines.0.get(line - 1).copied().unwrap_or(text.len());
    let end = lines.0.get(line).copied().unwrap_or(text.len());
    text.get(start..end).unwrap_or_default()
}

/// A word shown in a message: at most 64 characters, control characters escaped.
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chars = self.0.chars();
        let head: String = chars.by_ref().take(64).collect();
        let tail = if chars.next().is_some() { "…" } else { "" };
        write!(f, "{}{tail}", head.escape_debug())
    }
}

/// The names of every stage (`AS name`), lower-cased as Docker compares them.
fn stage_names(file: &Dockerfile<'_>) -> HashSet<String> {
    file.stages()
        .filter_map(|s| s.from.as_.as_ref().map(|(_, n)| n.value.to_lowercase()))
        .collect()
}

/// The automatic platform args of `platform` (`os/arch[/variant]`), build = target.
fn automatic_args(platform: &str) -> Env {
    let mut parts = platform.trim().splitn(3, '/');
    let (os, arch, variant) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    // PLATFORM, OS, OSVERSION, ARCH, VARIANT: the order of AUTOMATIC_ARGS, twice.
    let values = [platform.trim(), os, "", arch, variant];
    AUTOMATIC_ARGS
        .iter()
        .zip(values.iter().cycle())
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The global scope of FROM lines: automatic args, then each ARG before the first FROM.
fn global_env(
    file: &Dockerfile<'_>,
    lex: &mut Lex,
    escape: char,
    build_args: &BuildArgs,
    platform: &str,
    lines: &Lines,
) -> Result<Env, DockerfileError> {
    let mut env = automatic_args(platform);
    for arg in file.global_args() {
        let line = lines.at(arg.arg.span.start);
        for word in words(&arg.arguments.value, escape) {
            let (name, default) = match word.split_once('=') {
                Some((name, default)) => (name, Some(default)),
                None => (word.as_str(), None),
            };
            if name.is_empty() {
                let message = "ARG names can not be blank".into();
                return Err(DockerfileError::Syntax { line, message });
            }
            let value = match (build_args.get(name), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(expand(lex, d, &env, line)?.text),
                (None, None) => None,
            };
            match value {
                Some(v) => {
                    env.insert(name.to_owned(), v);
                }
                None if AUTOMATIC_ARGS.contains(&name) => {}
                None => {
                    env.remove(name);
                }
            }
        }
    }
    Ok(env)
}

fn expand(lex: &mut Lex, word: &str, env: &Env, line: usize) -> Result<Word, DockerfileError> {
    lex.process(word, env)
        .map_err(|e: LexError| DockerfileError::Substitution {
            line,
            word: Shown(word).to_string(),
            why: e.to_string(),
        })
}

/// The words of an ARG line, split as Docker's `parseWords` splits them (quotes and escapes
/// kept for the shell lexer).
fn words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut started, mut quote) = (false, None::<char>);
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
                continue;
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
        }
        started = true;
        if c == escape && quote != Some('\'') {
            if chars.peek().is_none() {
                continue;
            }
            word.push(c);
            word.extend(chars.next());
            continue;
        }
        word.push(c);
    }
    if started {
        words.push(word);
    }
    words
}

/// A flag's value with quotes and escapes removed, as Docker's `extractBuilderFlags` does.
fn unquote_flag(value: &str, escape: char) -> String {
    let mut out = String::new();
    let mut quote = None::<char>;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '\'' || c == '"' => quote = Some(c),
            _ if c == escape => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

/// The walk over the instructions, in order.
struct Walk {
    lex: Lex,
    escape: char,
    env: Env,
    lines: Lines,
    /// Every stage name in the file (COPY --from may name any).
    all_stages: HashSet<String>,
    /// Stage names defined so far (a FROM may name only an earlier one).
    earlier: HashSet<String>,
    out: Vec<BaseRef>,
    seen: HashSet<BaseRef>,
}

impl Walk {
    fn instruction(&mut self, instruction: &Instruction<'_>) -> Result<(), DockerfileError> {
        match instruction {
            Instruction::From(from) => self.from(from),
            Instruction::Copy(copy) => {
                let line = self.lines.at(copy.copy.span.start);
                self.source_flags(&copy.options, "from", line, "COPY --from")
            }
            Instruction::Run(run) => {
                let line = self.lines.at(run.run.span.start);
                self.source_flags(&run.options, "mount", line, "RUN --mount from=")
            }
            _ => Ok(()),
        }
    }

    fn from(&mut self, from: &FromInstruction<'_>) -> Result<(), DockerfileError> {
        let line = self.lines.at(from.from.span.start);
        let written = &from.image.value;
        let image = expand(&mut self.lex, written, &self.env, line)?;
        if image.text.is_empty() {
            return Err(DockerfileError::EmptyImage {
                line,
                written: Shown(written).to_string(),
                unset: image.unset.into_iter().collect(),
            });
        }
        let platform = self.platform(from, line)?;
        let stage = self.earlier.contains(&image.text.to_lowercase());
        if !stage && image.text != "scratch" {
            self.add(line, image.text, platform)?;
        }
        if let Some((_, name)) = &from.as_ {
            self.earlier.insert(name.value.to_lowercase());
        }
        Ok(())
    }

    /// `--platform` of a FROM, substituted; None when absent or written empty.
    fn platform(
        &mut self,
        from: &FromInstruction<'_>,
        line: usize,
    ) -> Result<Option<String>, DockerfileError> {
        let mut platform = None;
        for flag in &from.options {
            let name = &*flag.name.value;
            match (name, &flag.value) {
                ("platform", Some(v)) => platform = Some(unquote_flag(&v.value, self.escape)),
                ("platform", None) => {
                    let message = "FROM --platform needs a value (--platform=linux/amd64)".into();
                    return Err(DockerfileError::Syntax { line, message });
                }
                _ => {
                    let message = format!("FROM has an unknown flag --{}", Shown(name));
                    return Err(DockerfileError::Syntax { line, message });
                }
            }
        }
        let Some(written) = platform.filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let value = expand(&mut self.lex, &written, &self.env, line)?;
        if value.text.is_empty() {
            return Err(DockerfileError::EmptyPlatform {
                line,
                written: Shown(&written).to_string(),
                unset: value.unset.into_iter().collect(),
            });
        }
        check(line, "FROM --platform", &value.text)?;
        Ok(Some(value.text))
    }

    /// The images `COPY --from=X` (`flag` "from") or `RUN --mount=…,from=X` (`flag` "mount")
    /// name, with the build's platform.
    fn source_flags(
        &mut self,
        options: &[Flag<'_>],
        flag: &str,
        line: usize,
        what: &'static str,
    ) -> Result<(), DockerfileError> {
        for option in options.iter().filter(|o| o.name.value == flag) {
            let Some(value) = &option.value else { continue };
            let value = unquote_flag(&value.value, self.escape);
            let named = if flag == "mount" {
                mount_from(&value)
            } else {
                Some(value)
            };
            let Some(named) = named.filter(|n| !n.is_empty()) else {
                continue;
            };
            if let Some(image) = self.source_image(&named, line, what, flag == "from")? {
                self.add(line, image, None)?;
            }
        }
        Ok(())
    }

    /// The image a `--from` names, or None when it names a stage (or `scratch`).
    fn source_image(
        &mut self,
        named: &str,
        line: usize,
        what: &'static str,
        index_allowed: bool,
    ) -> Result<Option<String>, DockerfileError> {
        let literal = self.lex.process(named, &Env::new());
        if literal.map(|w| w.text).as_deref() != Ok(named) {
            return Err(DockerfileError::VariableFrom {
                line,
                what,
                value: Shown(named).to_string(),
            });
        }
        let index = index_allowed && named.bytes().all(|b| b.is_ascii_digit());
        let stage = self.all_stages.contains(&named.to_lowercase());
        Ok((!index && !stage && named != "scratch").then(|| named.to_owned()))
    }

    fn add(
        &mut self,
        line: usize,
        reference: String,
        platform: Option<String>,
    ) -> Result<(), DockerfileError> {
        check(line, "image reference", &reference)?;
        let base = BaseRef {
            reference,
            platform,
        };
        if self.seen.insert(base.clone()) {
            if self.out.len() == MAX_BASE_IMAGES {
                return Err(DockerfileError::TooManyBases { line });
            }
            self.out.push(base);
        }
        Ok(())
    }
}

/// The `from=` field of a `--mount` value (comma-separated `key=value` fields).
fn mount_from(value: &str) -> Option<String> {
    value.split(',').find_map(|field| {
        let (key, v) = field.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("from")
            .then(|| v.trim().to_owned())
    })
}

/// Refuses what no reference or platform can hold: control characters, absurd lengths. The
/// grammar is checked by the caller (`registry::reference`).
fn check(line: usize, what: &'static str, value: &str) -> Result<(), DockerfileError> {
    let problem = if value.len() > MAX_REFERENCE_BYTES {
        format!("is {} bytes, over {MAX_REFERENCE_BYTES}", value.len())
    } else if value.chars().any(char::is_control) {
        "contains a control character".to_owned()
    } else {
        return Ok(());
    };
    Err(DockerfileError::BadReference {
        line,
        what,
        shown: Shown(value).to_string(),
        problem,
    })
}

#[cfg(test)]
mod tests;
