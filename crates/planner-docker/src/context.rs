//! The build context of the classic builder: which files of a checkout go to the engine and
//! streaming them as a reproducible, uncompressed tar (BuildKit's is sent by
//! [`super::filesync`], on the same walk: [`walk_with`] with its [`Rules`]). The selection is
//! the docker CLI's for `docker build DIR` with the classic builder (docker/cli `ValidateContextDirectory`, `TrimBuildFilesFromExcludes`,
//! moby `TarWithOptions`): `.dockerignore` patterns matched using the parent directory's
//! results, an excluded directory entered only when an exception's text starts with it, the
//! Dockerfile and `.dockerignore` kept by appended exceptions; planner never sends the
//! top-level `.git`. The tar depends only on the commit: sorted entries, every mtime the
//! commit's time (like `git archive`), owner 0:0 without names, modes as git records them
//! (0644 or 0755, directories 0755, symlinks 0777). Memory stays bounded whatever the context
//! size: directories are walked one listing at a time, files are copied through small
//! buffers, and the tar leaves in ~64 KiB chunks over a bounded channel.

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::host::BuildHost;

use crate::ignore::{self, DockerIgnore, IgnoreError, MatchInfo, clean_path};

/// Size of the chunks sent to the engine.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the producer and the upload.
const CHANNEL_CAPACITY: usize = 4;
/// The ignore file, at the context root.
const IGNORE_FILE: &str = ".dockerignore";
/// Clone metadata, never part of the commit's tree.
const GIT_DIR: &str = ".git";
/// The log target, as it was before the workspace split (`PLANNER_LOG=planner::docker::context=debug`).
const TARGET: &str = "planner::docker::context";

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("bad .dockerignore in {path}: {source}\n  help: {}", .source.help())]
    Ignore {
        path: PathBuf,
        #[source]
        source: IgnoreError,
    },
    #[error(
        "refusing {path}: {why}\n  help: make .dockerignore a regular file in the repository (a symlink may point only inside it)"
    )]
    IgnoreFile { path: PathBuf, why: String },
    #[error(
        "cannot read the commit time of the checkout {path}: {detail}\n  help: remove the cached checkout so that planner clones it again"
    )]
    CommitTime { path: PathBuf, detail: String },
    /// The Dockerfile's directory is not a directory inside the checkout (BuildKit reads the
    /// Dockerfile from that directory).
    #[error(
        "the directory of the Dockerfile {path} is not a directory inside the checkout\n  help: set `dockerfile` in runtimes.toml to a path inside the repository"
    )]
    DockerfileDir { path: PathBuf },
    /// Patterns BuildKit sent with its request for the context (the ignore file it read,
    /// the paths `COPY` names) that cannot be applied.
    #[error(
        "the {what} patterns BuildKit sent for the build context cannot be applied: {source}\n  help: BuildKit read them from the repository's .dockerignore (or <Dockerfile>.dockerignore next to the Dockerfile), counting patterns as lines; fix that pattern there"
    )]
    Patterns {
        what: &'static str,
        #[source]
        source: IgnoreError,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("build context upload was abandoned")]
    Abandoned,
}

/// What went into the context. `bytes` is the total size of the regular files' contents;
/// `excluded` counts paths left out (an excluded directory that is not descended into counts
/// once) and skipped special files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub excluded: u64,
}

/// Lists what goes into the context, in tar order (used by tests and by the streamer).
pub fn list_entries(root: &Path, dockerfile_rel: &str) -> Result<Vec<String>, ContextError> {
    let mut sink = ListSink(Vec::new());
    walk(root, dockerfile_rel, &mut sink)?;
    Ok(sink.0)
}

/// Starts producing the tar on a blocking thread; returns the byte stream (chunks of ~64 KiB over a
/// bounded tokio mpsc channel, capacity ≈ 4) and a handle resolving to the stats or the first error.
/// If the stream receiver is dropped, the producer stops promptly with `ContextError::Abandoned`.
/// If the producer fails otherwise, the stream's last item is an `Err`.
///
/// Must be called within a tokio runtime.
pub fn stream(
    root: &Path,
    dockerfile_rel: &str,
    host: Arc<dyn BuildHost>,
) -> (
    impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    Producer,
) {
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let root = root.to_path_buf();
    let dockerfile = dockerfile_rel.to_owned();
    let producer = tokio::spawn(async move {
        let mtime = match commit_time(&root, host.as_ref()).await {
            Ok(t) => t,
            Err(e) => {
                let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                return Err(e);
            }
        };
        let blocking = tokio::task::spawn_blocking(move || produce(&root, &dockerfile, mtime, tx));
        match blocking.await {
            Ok(outcome) => outcome,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (body, producer)
}

/// The mtime of every entry: the commit time of the checkout at `root`, or 0 for a directory
/// that is no git checkout (no `.git`; planner's contexts always are checkouts).
/// `host` reads the commit time ([`BuildHost::commit_time`]).
pub(super) async fn commit_time(root: &Path, host: &dyn BuildHost) -> Result<u64, ContextError> {
    if fs::symlink_metadata(root.join(GIT_DIR)).is_err() {
        return Ok(0);
    }
    host.commit_time(root.to_path_buf())
        .await
        .map_err(|detail| ContextError::CommitTime {
            path: root.to_path_buf(),
            detail,
        })
}

/// The producer of [`stream`]: the stats, or the first error.
pub type Producer = tokio::task::JoinHandle<Result<ContextStats, ContextError>>;

/// How long [`producer_failure`] waits for the producer to notice the upload is gone.
const PRODUCER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// After the upload or the build failed: the producer's own error when it is the cause (a bad
/// `.dockerignore`, an unreadable file: ending the body with it is what broke the upload), or
/// `None` when it merely saw the upload go away, or succeeded. Drop the body stream first, so
/// that a producer waiting on a full channel ends too.
pub async fn producer_failure(producer: Producer) -> Option<String> {
    match tokio::time::timeout(PRODUCER_GRACE, producer).await {
        Ok(Ok(Err(ContextError::Abandoned) | Ok(_))) => None,
        Ok(Ok(Err(e))) => Some(e.to_string()),
        Ok(Err(join)) => Some(format!("the context producer failed: {join}")),
        Err(_elapsed) => None,
    }
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Selection: which paths go in.

/// The `.dockerignore` as the docker CLI applies it.
struct Filter {
    /// The patterns as read: the CLI's context check ([`Filter::check`]).
    read: DockerIgnore,
    /// With the exceptions the CLI appends for the Dockerfile and `.dockerignore`: its tar walk.
    walk: DockerIgnore,
    /// The ignore file, for errors.
    path: PathBuf,
}

impl Filter {
    fn load(root: &Path, dockerfile_rel: &str) -> Result<Self, ContextError> {
        let path = root.join(IGNORE_FILE);
        let read = match read_ignore_file(root, &path)? {
            Some(text) => DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore {
                path: path.clone(),
                source,
            })?,
            None => DockerIgnore::default(),
        };
        // `TrimBuildFilesFromExcludes`, with moby's older `Matches`.
        let mut walk = read.clone();
        if walk.matches_at_pattern_depth(IGNORE_FILE) {
            walk.push_exception(IGNORE_FILE);
        }
        let dockerfile = clean_path(dockerfile_rel.trim_start_matches('/'));
        if walk.matches_at_pattern_depth(&dockerfile) {
            walk.push_exception(&dockerfile);
        }
        Ok(Filter { read, walk, path })
    }

    fn error(&self, source: IgnoreError) -> ContextError {
        ContextError::Ignore {
            path: self.path.clone(),
            source,
        }
    }

    /// The docker CLI's `ValidateContextDirectory`, for what can fail in it: a path reaching a
    /// pattern that does not compile (every path it visits, excluded directories skipped).
    /// Only needed when such a pattern exists.
    fn check(&self, root: &Path) -> Result<(), ContextError> {
        if !self.read.has_unmatchable() {
            return Ok(());
        }
        let mut dirs = vec![(root.to_path_buf(), String::new())];
        while let Some((abs, rel)) = dirs.pop() {
            for name in sorted_children(&abs, rel.is_empty())?.into_iter().rev() {
                let child = join_rel(&rel, &name);
                if self.read.is_excluded(&child).map_err(|e| self.error(e))? {
                    continue;
                }
                let path = abs.join(&name);
                if fs::symlink_metadata(&path)
                    .map_err(io_error(&path))?
                    .is_dir()
                {
                    dirs.push((path, child));
                }
            }
        }
        Ok(())
    }
}

/// What a selection says of one path of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It goes in (a directory is walked).
    Include,
    /// A directory left out but walked: it goes in only when one of its children does.
    Enter,
    /// Left out (a directory is not walked).
    Skip,
}

/// Which paths of a tree go in: the docker CLI's rules ([`Filter`]) or those of BuildKit's
/// client ([`super::filesync`]). `Info` is what a directory's match leaves for its children.
pub(super) trait Rules {
    type Info;
    fn verdict(
        &self,
        rel: &str,
        is_dir: bool,
        parent: Option<&Self::Info>,
    ) -> Result<(Verdict, Self::Info), ContextError>;
}

impl Rules for Filter {
    type Info = MatchInfo;

    /// Whether `rel` is left out, given its parent's match results (`None` at the top); an
    /// excluded directory is walked only when an exception's text starts with it, as in
    /// moby's walker.
    fn verdict(
        &self,
        rel: &str,
        is_dir: bool,
        parent: Option<&MatchInfo>,
    ) -> Result<(Verdict, MatchInfo), ContextError> {
        let (excluded, matched) = self
            .walk
            .matches_using_parent(rel, parent)
            .map_err(|e| self.error(e))?;
        let verdict = if !excluded {
            Verdict::Include
        } else if is_dir && self.walk.enters_excluded_dir(rel) {
            Verdict::Enter
        } else {
            Verdict::Skip
        };
        Ok((verdict, matched))
    }
}

/// The ignore file BuildKit reads for the Dockerfile at `dockerfile_rel`
/// (`<Dockerfile>.dockerignore` beside it when there is one, else `.dockerignore`), checked
/// as the classic builder's is before anything is sent: one planner cannot use (a symlink out
/// of the repository, not a regular file, over the bounds, a bad pattern) fails the build
/// rather than letting BuildKit build without it.
pub fn check_buildkit_ignore(root: &Path, dockerfile_rel: &str) -> Result<(), ContextError> {
    let dockerfile = clean_path(dockerfile_rel.trim_start_matches('/'));
    let specific = root.join(format!("{dockerfile}.dockerignore"));
    let path = match fs::symlink_metadata(&specific) {
        Ok(_) => specific,
        Err(_) => root.join(IGNORE_FILE),
    };
    if let Some(text) = read_ignore_file(root, &path)? {
        DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore { path, source })?;
    }
    Ok(())
}

fn join_rel(parent: &str, name: &OsString) -> String {
    let lossy = name.to_string_lossy();
    if parent.is_empty() {
        lossy.into_owned()
    } else {
        format!("{parent}/{lossy}")
    }
}

/// The ignore file's text, `None` when there is none. A symlinked ignore file is followed (as
/// the docker CLI does) only while it stays inside the context; it must be a regular file of
/// at most [`ignore::MAX_FILE_BYTES`].
fn read_ignore_file(root: &Path, path: &Path) -> Result<Option<String>, ContextError> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(io_error(path))?,
    };
    let refuse = |why: &str| ContextError::IgnoreFile {
        path: path.to_path_buf(),
        why: why.to_owned(),
    };
    if meta.file_type().is_symlink() {
        let target = fs::canonicalize(path).map_err(|e| {
            let link = fs::read_link(path).unwrap_or_default();
            refuse(&format!(
                "it is a symlink to {}, which cannot be followed ({e})",
                link.display()
            ))
        })?;
        let base = fs::canonicalize(root).map_err(io_error(root))?;
        if !target.starts_with(&base) {
            return Err(refuse(&format!(
                "it is a symlink to {}, outside the build context",
                target.display()
            )));
        }
    }
    // Checked before opening too: opening a FIFO would wait for a writer.
    if !fs::metadata(path).map_err(io_error(path))?.is_file() {
        return Err(refuse("it is not a regular file"));
    }
    let file = File::open(path).map_err(io_error(path))?;
    let opened = file.metadata().map_err(io_error(path))?;
    if !opened.is_file() {
        return Err(refuse("it is not a regular file"));
    }
    let bytes = read_bounded(file, opened.len(), path)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// At most [`ignore::MAX_FILE_BYTES`] of the ignore file, whose size was `len` when opened (one
/// that grows meanwhile is cut at the limit and refused all the same).
fn read_bounded(file: File, len: u64, path: &Path) -> Result<Vec<u8>, ContextError> {
    let limit = ignore::MAX_FILE_BYTES as u64;
    let too_large = |size| ContextError::Ignore {
        path: path.to_path_buf(),
        source: IgnoreError::TooLarge { size },
    };
    if len > limit {
        return Err(too_large(len));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// The walk: sorted, depth-first, directories before their children.

/// One path that goes into the context.
pub(super) struct Entry<'a> {
    /// `/`-separated, relative to the root (lossy for non-UTF-8 names).
    pub(super) rel: &'a str,
    /// The same path with its exact bytes, for the tar header.
    pub(super) tar_path: &'a Path,
    pub(super) abs: &'a Path,
    pub(super) meta: &'a Metadata,
}

/// Receives the entries of the walk in order.
pub(super) trait Sink {
    fn emit(&mut self, entry: &Entry<'_>) -> Result<(), ContextError>;
}

/// Where a path is, in three spellings.
struct Location {
    rel: String,
    tar_path: PathBuf,
    abs: PathBuf,
}

impl Location {
    fn child(&self, name: &OsString) -> Location {
        Location {
            rel: join_rel(&self.rel, name),
            tar_path: self.tar_path.join(name),
            abs: self.abs.join(name),
        }
    }

    fn entry<'a>(&'a self, meta: &'a Metadata) -> Entry<'a> {
        Entry {
            rel: &self.rel,
            tar_path: &self.tar_path,
            abs: &self.abs,
            meta,
        }
    }
}

/// A directory being walked; `emitted` is false while it is excluded and no child needed it;
/// `matched` is what its path matched (`None` for the root).
struct Frame<I> {
    at: Location,
    meta: Metadata,
    emitted: bool,
    matched: Option<I>,
    children: std::vec::IntoIter<OsString>,
}

struct Walker<'a, R: Rules, S: Sink> {
    rules: &'a R,
    sink: &'a mut S,
    stats: ContextStats,
    stack: Vec<Frame<R::Info>>,
    /// Whether the root's `.git` is left out (the checkout's clone metadata).
    skip_git: bool,
}

/// The docker CLI's context of `root` for the Dockerfile at `dockerfile_rel`, into `sink`.
fn walk<S: Sink>(
    root: &Path,
    dockerfile_rel: &str,
    sink: &mut S,
) -> Result<ContextStats, ContextError> {
    let filter = Filter::load(root, dockerfile_rel)?;
    filter.check(root)?;
    walk_with(root, &filter, true, sink)
}

/// Walks `root` (sorted, depth-first, directories before their children), passing what
/// `rules` selects to `sink`; `skip_git` leaves the root's `.git` out.
pub(super) fn walk_with<R: Rules, S: Sink>(
    root: &Path,
    rules: &R,
    skip_git: bool,
    sink: &mut S,
) -> Result<ContextStats, ContextError> {
    let meta = fs::metadata(root).map_err(io_error(root))?;
    let mut walker = Walker {
        rules,
        sink,
        stats: ContextStats::default(),
        stack: Vec::new(),
        skip_git,
    };
    let at = Location {
        rel: String::new(),
        tar_path: PathBuf::new(),
        abs: root.to_path_buf(),
    };
    walker.enter(at, meta, true, None)?;
    walker.run()?;
    Ok(walker.stats)
}

impl<R: Rules, S: Sink> Walker<'_, R, S> {
    fn run(&mut self) -> Result<(), ContextError> {
        while let Some(frame) = self.stack.last_mut() {
            match frame.children.next() {
                Some(name) => {
                    let child = frame.at.child(&name);
                    self.visit(child)?;
                }
                None => self.leave(),
            }
        }
        Ok(())
    }

    fn enter(
        &mut self,
        at: Location,
        meta: Metadata,
        emitted: bool,
        matched: Option<R::Info>,
    ) -> Result<(), ContextError> {
        let children = sorted_children(&at.abs, self.skip_git && at.rel.is_empty())?;
        self.stack.push(Frame {
            at,
            meta,
            emitted,
            matched,
            children: children.into_iter(),
        });
        Ok(())
    }

    fn leave(&mut self) {
        if let Some(frame) = self.stack.pop()
            && !frame.emitted
        {
            self.stats.excluded += 1;
        }
    }

    fn visit(&mut self, at: Location) -> Result<(), ContextError> {
        let meta = fs::symlink_metadata(&at.abs).map_err(io_error(&at.abs))?;
        let kind = meta.file_type();
        let parent = self.stack.last().and_then(|f| f.matched.as_ref());
        let (verdict, matched) = self.rules.verdict(&at.rel, kind.is_dir(), parent)?;
        if kind.is_dir() {
            return self.visit_dir(at, meta, verdict, matched);
        }
        if verdict != Verdict::Include {
            self.stats.excluded += 1;
            return Ok(());
        }
        if !kind.is_file() && !kind.is_symlink() {
            tracing::warn!(target: TARGET, path = %at.abs.display(), "skipping special file in build context");
            self.stats.excluded += 1;
            return Ok(());
        }
        self.emit_parents()?;
        self.emit(&at.entry(&meta))
    }

    /// An included directory goes in and is walked; one the rules enter is walked (and goes
    /// in only when a child does); any other is left out.
    fn visit_dir(
        &mut self,
        at: Location,
        meta: Metadata,
        verdict: Verdict,
        matched: R::Info,
    ) -> Result<(), ContextError> {
        match verdict {
            Verdict::Include => {
                self.emit_parents()?;
                self.emit(&at.entry(&meta))?;
                self.enter(at, meta, true, Some(matched))
            }
            Verdict::Enter => self.enter(at, meta, false, Some(matched)),
            Verdict::Skip => {
                self.stats.excluded += 1;
                Ok(())
            }
        }
    }

    /// Emits the excluded directories on the current path, now that a child of theirs goes in.
    fn emit_parents(&mut self) -> Result<(), ContextError> {
        for frame in self.stack.iter_mut().filter(|f| !f.emitted) {
            emit(self.sink, &mut self.stats, &frame.at.entry(&frame.meta))?;
            frame.emitted = true;
        }
        Ok(())
    }

    fn emit(&mut self, entry: &Entry<'_>) -> Result<(), ContextError> {
        emit(self.sink, &mut self.stats, entry)
    }
}

fn emit<S: Sink>(
    sink: &mut S,
    stats: &mut ContextStats,
    entry: &Entry<'_>,
) -> Result<(), ContextError> {
    sink.emit(entry)?;
    let kind = entry.meta.file_type();
    if kind.is_dir() {
        stats.dirs += 1;
    } else if kind.is_symlink() {
        stats.symlinks += 1;
    } else {
        stats.files += 1;
        stats.bytes += entry.meta.len();
    }
    Ok(())
}

/// The names in a directory, sorted byte-wise; `.git` is left out with `skip_git`.
fn sorted_children(dir: &Path, skip_git: bool) -> Result<Vec<OsString>, ContextError> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(io_error(dir))? {
        let name = item.map_err(io_error(dir))?.file_name();
        if !(skip_git && name == GIT_DIR) {
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Sinks: a listing, and the tar.

struct ListSink(Vec<String>);

impl Sink for ListSink {
    fn emit(&mut self, entry: &Entry<'_>) -> Result<(), ContextError> {
        self.0.push(entry.rel.to_owned());
        Ok(())
    }
}

/// The producer thread's body: walk, write the tar, and report the outcome on both ends.
fn produce(
    root: &Path,
    dockerfile_rel: &str,
    mtime: u64,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
) -> Result<ContextStats, ContextError> {
    let mut sink = TarSink {
        builder: tar::Builder::new(ChunkWriter::new(tx)),
        root: root.to_path_buf(),
        mtime,
    };
    let result =
        walk(root, dockerfile_rel, &mut sink).and_then(|stats| sink.finish().map(|()| stats));
    match &result {
        Ok(stats) => {
            tracing::debug!(target: TARGET, ?stats, root = %root.display(), "build context sent")
        }
        Err(err) => sink.fail(err),
    }
    result
}

struct TarSink {
    builder: tar::Builder<ChunkWriter>,
    root: PathBuf,
    /// Every entry's mtime: the commit's time.
    mtime: u64,
}

impl Sink for TarSink {
    fn emit(&mut self, entry: &Entry<'_>) -> Result<(), ContextError> {
        let mut header = base_header(entry.meta, self.mtime);
        let kind = entry.meta.file_type();
        let written = if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            self.builder
                .append_data(&mut header, entry.tar_path, io::empty())
        } else if kind.is_symlink() {
            let target = fs::read_link(entry.abs).map_err(io_error(entry.abs))?;
            header.set_entry_type(tar::EntryType::Symlink);
            self.builder
                .append_link(&mut header, entry.tar_path, target)
        } else {
            let content = open_regular(entry.abs, entry.meta).map_err(io_error(entry.abs))?;
            header.set_size(entry.meta.len());
            self.builder
                .append_data(&mut header, entry.tar_path, content)
        };
        written.map_err(|source| self.failure(entry.abs, source))
    }
}

impl TarSink {
    /// Writes the end-of-archive blocks and the last partial chunk.
    fn finish(&mut self) -> Result<(), ContextError> {
        self.builder
            .finish()
            .and_then(|()| self.builder.get_mut().flush())
            .map_err(|source| self.failure(&self.root, source))
    }

    /// A failed write because the upload went away is [`ContextError::Abandoned`].
    fn failure(&self, path: &Path, source: io::Error) -> ContextError {
        if self.builder.get_ref().abandoned {
            ContextError::Abandoned
        } else {
            io_error(path)(source)
        }
    }

    /// Ends the stream with an error item (unless nobody listens) and mutes the writer.
    fn fail(&mut self, err: &ContextError) {
        let writer = self.builder.get_mut();
        writer.muted = true;
        if !writer.abandoned {
            // If the receiver is gone meanwhile there is nobody left to tell.
            let _ = writer
                .tx
                .blocking_send(Err(io::Error::other(err.to_string())));
        }
    }
}

/// GNU header with the mode git records and the commit's mtime, owned by root with empty
/// user/group names.
fn base_header(meta: &Metadata, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(mode(meta));
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    header.set_mtime(mtime);
    header
}

/// The mode as git has it: directories 0755, symlinks 0777, files 0755 when their owner may
/// run them and 0644 otherwise, whatever the umask of the checkout.
pub(super) fn mode(meta: &Metadata) -> u32 {
    let kind = meta.file_type();
    if kind.is_dir() {
        0o755
    } else if kind.is_symlink() {
        0o777
    } else if executable(meta) {
        0o755
    } else {
        0o644
    }
}

#[cfg(unix)]
fn executable(meta: &Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
fn executable(_: &Metadata) -> bool {
    false
}

/// Opens a regular file found by `lstat`, checking it is still that file, and yields exactly
/// its recorded size so the tar stays consistent even if the file changes meanwhile.
pub(super) fn open_regular(path: &Path, meta: &Metadata) -> io::Result<ExactReader<File>> {
    let file = File::open(path)?;
    let opened = file.metadata()?;
    if !opened.is_file() || !same_file(meta, &opened) {
        return Err(io::Error::other(
            "file was replaced while the context was being built",
        ));
    }
    Ok(ExactReader {
        inner: file,
        remaining: meta.len(),
    })
}

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &Metadata, _: &Metadata) -> bool {
    true
}

/// Reads exactly `remaining` bytes: stops there, and fails if the file ends sooner.
pub(super) struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while the context was being built",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Batches the tar into [`CHUNK`]-sized [`Bytes`] and sends them, blocking while the channel
/// is full.
struct ChunkWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
    /// The receiver was dropped.
    abandoned: bool,
    /// After a failure, writes (such as the tar builder's trailer on drop) go nowhere.
    muted: bool,
}

impl ChunkWriter {
    fn new(tx: mpsc::Sender<Result<Bytes, io::Error>>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            abandoned: false,
            muted: false,
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        if self.tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
            self.abandoned = true;
        }
        self.check()
    }

    fn check(&self) -> io::Result<()> {
        if self.abandoned {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "build context upload was abandoned",
            ));
        }
        Ok(())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.muted {
            return Ok(data.len());
        }
        self.check()?;
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.muted || self.buf.is_empty() {
            return Ok(());
        }
        self.send_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::collections::HashMap;
    use tempfile::TempDir;

    fn write(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn context(files: &[(&str, &str)]) -> TempDir {
        let dir = TempDir::new().unwrap();
        for (rel, content) in files {
            write(dir.path(), rel, content.as_bytes());
        }
        dir
    }

    fn list(dir: &TempDir) -> Vec<String> {
        list_entries(dir.path(), "Dockerfile").unwrap()
    }

    fn stream(
        root: &Path,
        dockerfile: &str,
    ) -> (
        impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
        Producer,
    ) {
        super::stream(root, dockerfile, Arc::new(crate::host::NoHost))
    }

    /// Runs the streamer to the end: the tar bytes and the stats.
    async fn tar_bytes(root: &Path, dockerfile: &str) -> (Vec<u8>, ContextStats) {
        let (body, producer) = stream(root, dockerfile);
        let chunks: Vec<Bytes> = body.map(|c| c.unwrap()).collect().await;
        assert!(chunks.iter().all(|c| c.len() <= CHUNK));
        let stats = producer.await.unwrap().unwrap();
        (chunks.concat(), stats)
    }

    struct TarItem {
        kind: tar::EntryType,
        link: Option<String>,
        content: Vec<u8>,
        header: tar::Header,
    }

    fn read_tar(bytes: &[u8]) -> Vec<(String, TarItem)> {
        let mut archive = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let mut content = Vec::new();
            io::Read::read_to_end(&mut entry, &mut content).unwrap();
            let read = TarItem {
                kind: entry.header().entry_type(),
                link,
                content,
                header: entry.header().clone(),
            };
            out.push((path, read));
        }
        out
    }

    #[test]
    fn entries_are_sorted_depth_first_with_dirs_first() {
        let dir = context(&[
            ("b.txt", "b"),
            ("a/z", "z"),
            ("a/b/c", "c"),
            ("a.txt", "a"),
            ("Dockerfile", "FROM scratch"),
            ("_x", ""),
        ]);
        let expected = [
            "Dockerfile",
            "_x",
            "a",
            "a/b",
            "a/b/c",
            "a/z",
            "a.txt",
            "b.txt",
        ];
        assert_eq!(list(&dir), expected);
    }

    #[test]
    fn top_level_git_is_skipped_but_nested_git_is_kept() {
        let dir = context(&[
            (".git/HEAD", "ref"),
            (".gitignore", "x"),
            ("sub/.git/HEAD", "ref"),
        ]);
        let expected = [".gitignore", "sub", "sub/.git", "sub/.git/HEAD"];
        assert_eq!(list(&dir), expected);
    }

    #[tokio::test]
    async fn ignore_patterns_and_exceptions() {
        let dir = context(&[
            (
                ".dockerignore",
                "build\n!build/keep.txt\n*.log\nnode_modules\n",
            ),
            ("Dockerfile", "FROM scratch"),
            ("app.log", "log"),
            ("build/keep.txt", "keep"),
            ("build/other.txt", "other"),
            ("build/sub/deep.txt", "deep"),
            ("node_modules/a/b", "b"),
            ("src/main.rs", "fn main() {}"),
        ]);
        let expected = [
            ".dockerignore",
            "Dockerfile",
            "build",
            "build/keep.txt",
            "src",
            "src/main.rs",
        ];
        assert_eq!(list(&dir), expected);
        let (_, stats) = tar_bytes(dir.path(), "Dockerfile").await;
        // Only `build` is entered (an exception starts with `build/`): app.log,
        // build/other.txt, build/sub and node_modules are left out.
        assert_eq!(stats.excluded, 4);
        assert_eq!((stats.files, stats.dirs, stats.symlinks), (4, 2, 0));
    }

    /// The paths of a context with `.dockerignore` `ignore` and the files `paths`.
    fn selected(ignore: &str, paths: &[&str]) -> Vec<String> {
        let mut files = vec![(".dockerignore", ignore), ("Dockerfile", "FROM scratch")];
        files.extend(paths.iter().map(|p| (*p, "x")));
        list(&context(&files))
    }

    #[test]
    fn an_excluded_directory_is_entered_only_for_an_exception_starting_with_it() {
        let tree = ["a/keep.txt", "a/other", "keep.txt", "x"];
        for ignore in ["*\n!*/keep.txt\n", "*\n!**/keep.txt\n"] {
            let got = selected(&format!("{ignore}!keep.txt\n"), &tree);
            assert_eq!(got, [".dockerignore", "Dockerfile", "keep.txt"], "{ignore}");
        }
        let got = selected(
            "build\n!build/**/keep.txt\n",
            &["build/keep.txt", "build/sub/keep.txt", "build/x"],
        );
        assert_eq!(
            got,
            [".dockerignore", "Dockerfile", "build", "build/keep.txt"]
        );
    }

    #[test]
    fn children_match_using_their_parents_results() {
        let got = selected(
            "docs\n!docs/README.md\ndocs\n",
            &["docs/README.md", "docs/x"],
        );
        assert_eq!(
            got,
            [".dockerignore", "Dockerfile", "docs", "docs/README.md"]
        );
    }

    #[test]
    fn a_malformed_pattern_no_path_reaches_is_no_error() {
        let got = selected("*\n[z-a]\n!keep*\n", &["keep.txt", "other"]);
        assert_eq!(got, [".dockerignore", "Dockerfile", "keep.txt"]);
        let dir = context(&[(".dockerignore", "[z-a]\n"), ("a", "")]);
        match list_entries(dir.path(), "Dockerfile") {
            Err(e @ ContextError::Ignore { .. }) => {
                let text = e.to_string();
                assert!(text.contains("line 1: pattern \"[z-a]\""), "{text}");
                assert!(text.contains("invalid character class range"), "{text}");
                assert!(text.contains("help: fix or remove line 1"), "{text}");
            }
            other => panic!("expected an ignore error, got {other:?}"),
        }
    }

    #[test]
    fn a_malformed_pattern_reached_only_in_the_tar_walk_is_an_error() {
        // The CLI's context check skips `docs` and passes; its tar walk enters it for the
        // exception, reaches `[z-a]` at docs/keep and silently ends the context there.
        let dir = context(&[
            (".dockerignore", "*\n!docs/keep\n[z-a]\n"),
            ("Dockerfile", "FROM scratch"),
            ("docs/keep", "k"),
        ]);
        match list_entries(dir.path(), "Dockerfile") {
            Err(ContextError::Ignore {
                source: IgnoreError::Unmatchable { line, path, .. },
                ..
            }) => assert_eq!((line, path.as_str()), (3, "docs/keep")),
            other => panic!("expected an unmatchable pattern, got {other:?}"),
        }
    }

    #[test]
    fn excluded_directory_without_exceptions_is_not_descended() {
        let dir = context(&[
            (".dockerignore", "node_modules\n"),
            ("node_modules/a/b/c", "c"),
            ("node_modules/d", "d"),
        ]);
        let mut sink = ListSink(Vec::new());
        let stats = walk(dir.path(), "Dockerfile", &mut sink).unwrap();
        assert_eq!(sink.0, [".dockerignore"]);
        assert_eq!(stats.excluded, 1);
    }

    #[test]
    fn dockerfile_and_dockerignore_are_forced_in() {
        let dir = context(&[
            (".dockerignore", "*\n"),
            ("docker/Dockerfile", "FROM scratch"),
            ("docker/other", "x"),
            ("src/a", "a"),
        ]);
        let entries = list_entries(dir.path(), "./docker//Dockerfile").unwrap();
        assert_eq!(entries, [".dockerignore", "docker", "docker/Dockerfile"]);
    }

    #[test]
    fn bad_dockerignore_is_an_ignore_error() {
        let dir = context(&[(".dockerignore", "ok\n[\n")]);
        match list_entries(dir.path(), "Dockerfile") {
            Err(ContextError::Ignore { path, source }) => {
                assert_eq!(path, dir.path().join(".dockerignore"));
                assert!(source.to_string().starts_with("line 2:"), "{source}");
            }
            other => panic!("expected an ignore error, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_are_stored_as_links() {
        let dir = context(&[("target.txt", "t")]);
        std::os::unix::fs::symlink("target.txt", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("missing/nowhere", dir.path().join("dangling")).unwrap();
        let (bytes, stats) = tar_bytes(dir.path(), "Dockerfile").await;
        let entries: HashMap<String, TarItem> = read_tar(&bytes).into_iter().collect();
        assert_eq!(entries["link"].kind, tar::EntryType::Symlink);
        assert_eq!(entries["link"].link.as_deref(), Some("target.txt"));
        assert_eq!(entries["dangling"].link.as_deref(), Some("missing/nowhere"));
        assert_eq!(stats.symlinks, 2);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlink_outside_the_root_is_not_followed() {
        let outside = context(&[
            ("secret.txt", "TOP-SECRET-MARKER"),
            ("dir/inner", "INNER-MARKER"),
        ]);
        let dir = context(&[("Dockerfile", "FROM scratch")]);
        let secret = outside.path().join("secret.txt");
        std::os::unix::fs::symlink(&secret, dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("dir"), dir.path().join("escdir")).unwrap();
        let (bytes, _) = tar_bytes(dir.path(), "Dockerfile").await;
        let entries = read_tar(&bytes);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Dockerfile", "escape", "escdir"]);
        assert_eq!(entries[1].1.link.as_deref(), secret.to_str());
        assert!(entries[1].1.content.is_empty());
        let haystack = String::from_utf8_lossy(&bytes);
        assert!(!haystack.contains("TOP-SECRET-MARKER"));
        assert!(!haystack.contains("INNER-MARKER"));
    }

    #[cfg(unix)]
    #[test]
    fn dockerignore_symlinked_outside_the_root_is_refused() {
        let outside = context(&[("ignore", "*\n")]);
        let dir = context(&[("Dockerfile", "FROM scratch")]);
        let link = dir.path().join(".dockerignore");
        std::os::unix::fs::symlink(outside.path().join("ignore"), &link).unwrap();
        match list_entries(dir.path(), "Dockerfile") {
            Err(e @ ContextError::IgnoreFile { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&link.display().to_string()), "{text}");
                assert!(text.contains("outside the build context"), "{text}");
                assert!(
                    text.contains("help: make .dockerignore a regular file"),
                    "{text}"
                );
            }
            other => panic!("expected a refused ignore file, got {other:?}"),
        }
    }

    #[test]
    fn oversized_dockerignore_is_refused_unread() {
        let dir = context(&[("Dockerfile", "FROM scratch")]);
        let text = "x\n".repeat(ignore::MAX_FILE_BYTES / 2 + 1);
        write(dir.path(), ".dockerignore", text.as_bytes());
        let err = list_entries(dir.path(), "Dockerfile").unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, ContextError::Ignore { source: IgnoreError::TooLarge { size }, .. }
                if size == text.len() as u64),
            "{err:?}"
        );
        assert!(message.contains(".dockerignore"), "{message}");
        assert!(
            message.contains("over the limit of 1048576 bytes"),
            "{message}"
        );
        assert!(message.contains("help: "), "{message}");
        // At the limit it is read.
        write(
            dir.path(),
            ".dockerignore",
            &vec![b'#'; ignore::MAX_FILE_BYTES],
        );
        assert!(list_entries(dir.path(), "Dockerfile").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_named_dockerignore_is_refused_without_blocking() {
        let dir = context(&[("Dockerfile", "FROM scratch")]);
        let fifo = dir.path().join(".dockerignore");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // no mkfifo here: nothing to check
        }
        let err = list_entries(dir.path(), "Dockerfile").unwrap_err();
        assert!(
            matches!(&err, ContextError::IgnoreFile { why, .. } if why.contains("not a regular file")),
            "{err:?}"
        );
    }

    #[test]
    fn a_directory_named_dockerignore_is_refused() {
        let dir = context(&[("Dockerfile", "FROM scratch"), (".dockerignore/x", "")]);
        let err = list_entries(dir.path(), "Dockerfile").unwrap_err();
        assert!(
            matches!(&err, ContextError::IgnoreFile { why, .. } if why.contains("not a regular file")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn contents_and_headers_round_trip() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let long = format!("{}/{}.txt", "d".repeat(80), "f".repeat(90));
        let dir = context(&[("Dockerfile", "FROM scratch\n"), ("empty", "")]);
        write(dir.path(), "big.bin", &big);
        write(dir.path(), &long, b"long path");
        let (bytes, stats) = tar_bytes(dir.path(), "Dockerfile").await;
        let entries = read_tar(&bytes);
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, list(&dir));
        let by_name: HashMap<_, _> = entries.into_iter().collect();
        assert_eq!(by_name["big.bin"].content, big);
        assert_eq!(by_name["Dockerfile"].content, b"FROM scratch\n");
        assert!(by_name["empty"].content.is_empty());
        assert_eq!(by_name[long.as_str()].content, b"long path");
        assert_eq!(
            by_name["d".repeat(80).as_str()].kind,
            tar::EntryType::Directory
        );
        let header = &by_name["big.bin"].header;
        assert_eq!(header.mode().unwrap(), 0o644);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        assert_eq!(header.username_bytes(), Some(&b""[..]));
        assert_eq!(header.groupname_bytes(), Some(&b""[..]));
        assert_eq!(
            header.mtime().unwrap(),
            0,
            "no checkout here: no commit time"
        );
        assert_eq!(stats.bytes, big.len() as u64 + 13 + 9);
        assert_eq!((stats.files, stats.dirs), (4, 1));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn file_modes_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = context(&[("run.sh", "#!/bin/sh\n")]);
        let path = dir.path().join("run.sh");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let (bytes, _) = tar_bytes(dir.path(), "Dockerfile").await;
        let entries = read_tar(&bytes);
        assert_eq!(entries[0].1.header.mode().unwrap(), 0o755);
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_skipped() {
        let dir = context(&[("Dockerfile", "FROM scratch")]);
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let mut sink = ListSink(Vec::new());
        let stats = walk(dir.path(), "Dockerfile", &mut sink).unwrap();
        assert_eq!(sink.0, ["Dockerfile"]);
        assert_eq!(stats.excluded, 1);
    }

    #[tokio::test]
    async fn dropping_the_stream_abandons_the_producer() {
        let dir = context(&[("Dockerfile", "FROM scratch")]);
        write(dir.path(), "huge.bin", &vec![7u8; 16 * 1024 * 1024]);
        let (mut body, producer) = stream(dir.path(), "Dockerfile");
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(first.len(), CHUNK);
        drop(body);
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), producer)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(outcome, Err(ContextError::Abandoned)),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn producer_failure_ends_the_stream_with_an_error() {
        let dir = TempDir::new().unwrap();
        let missing = dir.path().join("missing");
        let (body, producer) = stream(&missing, "Dockerfile");
        let items: Vec<Result<Bytes, io::Error>> = body.collect().await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        let outcome = producer.await.unwrap();
        assert!(matches!(outcome, Err(ContextError::Io { path, .. }) if path == missing));
    }

    #[test]
    fn exact_reader_fails_when_the_file_is_short() {
        let mut reader = ExactReader {
            inner: &b"abc"[..],
            remaining: 5,
        };
        let mut out = Vec::new();
        let err = io::Read::read_to_end(&mut reader, &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut long = ExactReader {
            inner: &b"abcdef"[..],
            remaining: 2,
        };
        let mut out = Vec::new();
        io::Read::read_to_end(&mut long, &mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
