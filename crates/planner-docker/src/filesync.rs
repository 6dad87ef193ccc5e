//! The build context as BuildKit's own client sends it: the `FileSync` service of a BuildKit
//! session (`DiffCopy`, fsutil's packet protocol), serving the two directories ("locals")
//! `docker buildx build` serves: `context` (the checkout) and `dockerfile` (the directory of the
//! Dockerfile). BuildKit asks for a local by name with the patterns it wants applied: the
//! `.dockerignore` it chose (it reads `<Dockerfile>.dockerignore` next to the Dockerfile first,
//! then `.dockerignore`, through this same service) as exclude patterns, the paths `COPY` names
//! as follow paths, and for the Dockerfile only its own files. They are applied as fsutil's
//! filter does for buildx (`fsutil.NewFilterFS`): include and exclude matchers over each path
//! with its parent directory's results, an excluded directory walked only when some exception
//! could reach inside it (always when an exception has a wildcard), follow paths resolved
//! through symlinks into include patterns. Nothing is forced in: BuildKit reads the Dockerfile
//! from its own local, so an excluded Dockerfile or `.dockerignore` stays out of `COPY .`.
//!
//! The entries are planner's, as in the classic builder's tar ([`super::context`]): the same
//! walk (sorted, depth-first, the checkout's `.git` left out, special files skipped, symlinks
//! sent as links, never followed), owner 0:0, the modes git records, every mtime the commit's
//! time. The protocol: one `STAT` packet per entry in walk order (its index is its id), an
//! empty `STAT` at the end; BuildKit requests regular files by id (`REQ`) and gets their
//! bytes in `DATA` packets, an empty one ending each; its `FIN` is answered with `FIN`. A
//! failure is sent as an `ERR` packet and kept for planner's own error.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bollard::fsutil::types::packet::PacketType;
use bollard::fsutil::types::{Packet, Stat};
use bollard::moby::filesync::packet::file_sync_server::FileSync;
use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::context::{self, ContextError, Entry, Rules, Sink, Verdict};
use super::ignore::{DockerIgnore, IgnoreError, MatchInfo, clean_path};
use crate::host::BuildHost;

/// The local of the build context.
pub const LOCAL_CONTEXT: &str = "context";
/// The local holding the Dockerfile.
pub const LOCAL_DOCKERFILE: &str = "dockerfile";
/// Bytes per `DATA` packet (fsutil's buffer).
const DATA_CHUNK: usize = 32 * 1024;
/// Packets buffered towards BuildKit.
const CHANNEL_CAPACITY: usize = 16;
/// File requests queued before BuildKit has to wait.
const JOBS_CAPACITY: usize = 1024;
/// Most follow paths and include patterns taken from one request.
const MAX_PATHS: usize = 10_000;
/// Characters that make a pattern more than a prefix (fsutil's `patternChars`, on unix).
const PATTERN_CHARS: &[char] = &['*', '[', ']', '?', '^', '\\'];

/// Go's `os.FileMode` type bits, as fsutil's `Stat.mode` carries them.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;

/// What the session serves: the checkout, the Dockerfile's directory in it, and the time
/// every entry carries.
#[derive(Debug, Clone)]
pub struct Locals {
    pub context: PathBuf,
    /// The Dockerfile's directory: the checkout or a directory inside it.
    pub dockerfile: PathBuf,
    /// The commit's time, in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl Locals {
    /// The locals of a build of `dockerfile_rel` (relative to the checkout `root`): the
    /// Dockerfile's directory must be a directory inside the checkout; also returns the
    /// Dockerfile's name in it (what BuildKit is told to read). `host` reads the commit time.
    pub async fn new(
        root: &Path,
        dockerfile_rel: &str,
        host: &dyn BuildHost,
    ) -> Result<(Locals, String), ContextError> {
        let cleaned = clean_path(dockerfile_rel.trim_start_matches('/'));
        let (dir, name) = match cleaned.rsplit_once('/') {
            Some((dir, name)) => (dir.to_owned(), name.to_owned()),
            None => (String::new(), cleaned.clone()),
        };
        let outside = || ContextError::DockerfileDir {
            path: root.join(&cleaned),
        };
        if cleaned == "." || dir.split('/').any(|part| part == "..") || name == ".." {
            return Err(outside());
        }
        let context = fs::canonicalize(root).map_err(context::io_error(root))?;
        let dockerfile = context.join(&dir);
        let resolved = fs::canonicalize(&dockerfile).map_err(context::io_error(&dockerfile))?;
        if !resolved.starts_with(&context) || !resolved.is_dir() {
            return Err(outside());
        }
        let secs = context::commit_time(root, host).await?;
        let mtime_ns = i64::try_from(secs)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000);
        let locals = Locals {
            context,
            dockerfile: resolved,
            mtime_ns,
        };
        Ok((locals, name))
    }

    /// The directory of local `name`, and whether its `.git` is the checkout's (left out).
    fn dir(&self, name: &str) -> Option<(&Path, bool)> {
        match name {
            LOCAL_CONTEXT => Some((&self.context, true)),
            LOCAL_DOCKERFILE => Some((&self.dockerfile, self.dockerfile == self.context)),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What BuildKit asks for.

/// The options of one `DiffCopy` call, from its gRPC metadata.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Asked {
    pub dir: String,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub follow: Option<Vec<String>>,
}

impl Asked {
    /// Reads `dir-name`, `include-patterns`, `exclude-patterns` and `followpaths` (each value
    /// URL-unescaped when `<key>-encoded` says so, as BuildKit encodes non-ASCII text).
    pub fn from_metadata(md: &tonic::metadata::MetadataMap) -> Result<Self, String> {
        let values = |key: &str| -> Result<Option<Vec<String>>, String> {
            let encoded = md
                .get(format!("{key}-encoded").as_str())
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"));
            let mut out = Vec::new();
            for value in md.get_all(key) {
                if out.len() == MAX_PATHS {
                    return Err(format!("more than {MAX_PATHS} values of {key}"));
                }
                let text = value
                    .to_str()
                    .map_err(|_| format!("a value of {key} is not text"))?;
                out.push(if encoded {
                    url::form_urlencoded::parse(format!("x={text}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                } else {
                    text.to_owned()
                });
            }
            Ok((!out.is_empty()).then_some(out))
        };
        Ok(Asked {
            dir: values("dir-name")?
                .and_then(|v| v.into_iter().next())
                .unwrap_or_default(),
            include: values("include-patterns")?,
            exclude: values("exclude-patterns")?,
            follow: values("followpaths")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// fsutil's filter.

/// fsutil's `filterFS` over one local: which paths BuildKit gets.
pub struct FsutilRules {
    include: Option<DockerIgnore>,
    exclude: Option<DockerIgnore>,
    /// No include pattern has a wildcard before its trailing `/*` or `/**`: a directory no
    /// include pattern starts with is not walked.
    only_prefix_includes: bool,
    /// Likewise for the exceptions of the exclude patterns.
    only_prefix_exceptions: bool,
    /// Each include pattern (not exceptions) without its trailing glob, with a `/`.
    include_prefixes: Vec<String>,
    /// Each exception of the exclude patterns without its trailing glob, with a `/`.
    exception_prefixes: Vec<String>,
}

/// fsutil's `patternWithoutTrailingGlob`.
fn without_trailing_glob(text: &str) -> &str {
    let text = text.strip_suffix("/**").unwrap_or(text);
    text.strip_suffix("/*").unwrap_or(text)
}

impl FsutilRules {
    /// `fsutil.NewFilterFS` for the local at `root`: the follow paths resolved through its
    /// symlinks join the include patterns.
    pub fn new(root: &Path, req: &Asked) -> Result<Self, ContextError> {
        let mut includes = req.include.clone();
        if let Some(follow) = &req.follow {
            let targets = follow_links(root, follow);
            if let Some(targets) = targets {
                let mut all = includes.unwrap_or_default();
                all.extend(targets);
                includes = dedupe_paths(&all);
            }
        }
        let matcher = |what: &'static str, patterns: &[String]| {
            DockerIgnore::from_patterns(patterns)
                .map_err(|source| ContextError::Patterns { what, source })
        };
        let include = match includes.filter(|p| !p.is_empty()) {
            Some(p) => Some(matcher("include", &p)?),
            None => None,
        };
        let exclude = match req.exclude.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(matcher("exclude", p)?),
            None => None,
        };
        let prefixes = |m: &Option<DockerIgnore>, exception: bool| -> Vec<String> {
            m.iter()
                .flat_map(|m| m.texts())
                .filter(|(e, _)| *e == exception)
                .map(|(_, text)| without_trailing_glob(text).to_owned())
                .collect()
        };
        let include_prefixes = prefixes(&include, false);
        let exception_prefixes = prefixes(&exclude, true);
        let literal = |p: &[String]| !p.iter().any(|t| t.contains(PATTERN_CHARS));
        Ok(FsutilRules {
            only_prefix_includes: literal(&include_prefixes),
            only_prefix_exceptions: literal(&exception_prefixes),
            include_prefixes: include_prefixes.into_iter().map(|p| p + "/").collect(),
            exception_prefixes: exception_prefixes.into_iter().map(|p| p + "/").collect(),
            include,
            exclude,
        })
    }

    fn error(what: &'static str) -> impl FnOnce(IgnoreError) -> ContextError {
        move |source| ContextError::Patterns { what, source }
    }
}

/// What matched a directory, for its children: (include, exclude).
pub type FsutilInfo = (Option<MatchInfo>, Option<MatchInfo>);

impl Rules for FsutilRules {
    type Info = FsutilInfo;

    fn verdict(
        &self,
        rel: &str,
        is_dir: bool,
        parent: Option<&FsutilInfo>,
    ) -> Result<(Verdict, FsutilInfo), ContextError> {
        let mut info: FsutilInfo = (None, None);
        let mut skip = false;
        let dir_slash = format!("{rel}/");
        if let Some(include) = &self.include {
            let (m, matched) = include
                .matches_using_parent(rel, parent.and_then(|p| p.0.as_ref()))
                .map_err(Self::error("include"))?;
            info.0 = Some(matched);
            if !m {
                let inside = self
                    .include_prefixes
                    .iter()
                    .any(|p| p.starts_with(&dir_slash));
                if is_dir && self.only_prefix_includes && !inside {
                    return Ok((Verdict::Skip, info));
                }
                skip = true;
            }
        }
        if let Some(exclude) = &self.exclude {
            let (m, matched) = exclude
                .matches_using_parent(rel, parent.and_then(|p| p.1.as_ref()))
                .map_err(Self::error("exclude"))?;
            info.1 = Some(matched);
            if m {
                let reopened = self
                    .exception_prefixes
                    .iter()
                    .any(|p| p.starts_with(&dir_slash));
                if is_dir && self.only_prefix_exceptions && !reopened {
                    return Ok((Verdict::Skip, info));
                }
                skip = true;
            }
        }
        let verdict = match (skip, is_dir) {
            (false, _) => Verdict::Include,
            (true, true) => Verdict::Enter,
            (true, false) => Verdict::Skip,
        };
        Ok((verdict, info))
    }
}

/// fsutil's `dedupePaths` (over a sorted list): drops paths under one kept before them;
/// `None` when one is `.` (no filter at all).
fn dedupe_paths(paths: &[String]) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(paths.len());
    let mut last = String::new();
    for p in paths {
        if p == "." {
            return None;
        }
        if p.starts_with(&format!("{last}/")) {
            continue;
        }
        out.push(p.clone());
        last = p.clone();
    }
    Some(out)
}

/// fsutil's `FollowLinks`: each path, and every symlink on the way to it resolved (its
/// target joins the paths, relative to the local's root), sorted and deduplicated; `None`
/// when one of them is the root. A link is read, never followed outside `root`.
fn follow_links(root: &Path, paths: &[String]) -> Option<Vec<String>> {
    let mut resolver = Resolver {
        root,
        resolved: BTreeSet::new(),
        steps: 0,
    };
    for p in paths {
        resolver.append(p);
    }
    let sorted: Vec<String> = resolver.resolved.into_iter().collect();
    dedupe_paths(&sorted)
}

/// Most symlinks one request may make the resolver read (a loop of links ends here).
const MAX_RESOLVE_STEPS: usize = 100_000;

struct Resolver<'a> {
    root: &'a Path,
    resolved: BTreeSet<String>,
    steps: usize,
}

/// Go's `filepath.Join` for `/`-separated paths.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => clean_path(b),
        (_, true) => clean_path(a),
        _ => clean_path(&format!("{a}/{b}")),
    }
}

impl Resolver<'_> {
    fn append(&mut self, p: &str) {
        self.steps += 1;
        if self.steps > MAX_RESOLVE_STEPS {
            return;
        }
        let mut rest = join(".", p);
        let mut current = ".".to_owned();
        loop {
            let (first, tail) = match rest.split_once('/') {
                Some((first, tail)) => (first.to_owned(), tail.to_owned()),
                None => (rest.clone(), String::new()),
            };
            current = join(&current, &first);
            let targets = self.read_symlink(&current, true);
            rest = tail;
            if (rest.is_empty() || targets.is_some()) && self.resolved.contains(&current) {
                return;
            }
            if let Some(targets) = targets {
                self.resolved.insert(current);
                for target in targets {
                    self.append(&join(&target, &rest));
                }
                return;
            }
            if rest.is_empty() {
                self.resolved.insert(current);
                return;
            }
        }
    }

    /// The targets of the symlink at `p` (as `/`-rooted paths), or of each symlink among the
    /// names a wildcard last part matches; `None` when there is none.
    fn read_symlink(&mut self, p: &str, wildcards: bool) -> Option<Vec<String>> {
        if p == "." || p == ".." || p.starts_with("../") {
            return None;
        }
        let (dir, base) = p.rsplit_once('/').unwrap_or((".", p));
        if wildcards && contains_wildcards(base) {
            let pattern = DockerIgnore::from_patterns(&[base]).ok()?;
            let mut names: Vec<String> = fs::read_dir(self.root.join(dir))
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !(dir == "." && n == ".git"))
                .collect();
            names.sort();
            let mut out: Option<Vec<String>> = None;
            for name in names {
                if pattern.is_excluded(&name).unwrap_or(false)
                    && let Some(found) = self.read_symlink(&join(dir, &name), false)
                {
                    out.get_or_insert_with(Vec::new).extend(found);
                }
            }
            return out;
        }
        let path = self.root.join(p);
        let meta = fs::symlink_metadata(&path).ok()?;
        if !meta.file_type().is_symlink() {
            return None;
        }
        let link = fs::read_link(&path).ok()?;
        let link = clean_path(&link.to_string_lossy());
        Some(vec![if link.starts_with('/') {
            link
        } else {
            join("/", &join(dir, &link))
        }])
    }
}

/// fsutil's `containsWildcards`: `*`, `?` or `[`, not escaped with `\`.
fn contains_wildcards(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        at += 1;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// The sender.

/// A regular file sent as a `STAT`, which BuildKit may request.
struct FileRef {
    abs: PathBuf,
    meta: Metadata,
}

/// The files of one transfer by id.
type Files = Arc<Mutex<HashMap<u32, FileRef>>>;

/// Sends each entry as a `STAT` packet and records the files.
struct StatSink {
    tx: mpsc::Sender<Result<Packet, Status>>,
    files: Files,
    next: u32,
    mtime_ns: i64,
}

impl Sink for StatSink {
    fn emit(&mut self, entry: &Entry<'_>) -> Result<(), ContextError> {
        let stat = stat(entry, self.mtime_ns)?;
        let id = self.next;
        self.next = self.next.checked_add(1).ok_or(ContextError::Abandoned)?;
        if entry.meta.file_type().is_file()
            && let Ok(mut files) = self.files.lock()
        {
            let file = FileRef {
                abs: entry.abs.to_path_buf(),
                meta: entry.meta.clone(),
            };
            files.insert(id, file);
        }
        let packet = Packet {
            r#type: PacketType::PacketStat as i32,
            stat: Some(stat),
            ..Default::default()
        };
        self.tx
            .blocking_send(Ok(packet))
            .map_err(|_| ContextError::Abandoned)
    }
}

/// fsutil's `Stat` of an entry, with planner's normalised owner, mode and time.
fn stat(entry: &Entry<'_>, mtime_ns: i64) -> Result<Stat, ContextError> {
    let kind = entry.meta.file_type();
    let mut mode = context::mode(entry.meta);
    let mut linkname = String::new();
    if kind.is_dir() {
        mode |= GO_MODE_DIR;
    } else if kind.is_symlink() {
        mode |= GO_MODE_SYMLINK;
        let target = fs::read_link(entry.abs).map_err(context::io_error(entry.abs))?;
        linkname = target.to_string_lossy().into_owned();
    }
    let size = match kind.is_dir() {
        true => 0,
        false => i64::try_from(entry.meta.len()).unwrap_or(i64::MAX),
    };
    Ok(Stat {
        path: entry.rel.to_owned(),
        mode,
        uid: 0,
        gid: 0,
        size,
        mod_time: mtime_ns,
        linkname,
        ..Default::default()
    })
}

/// The packet that reports `message` to BuildKit.
fn err_packet(message: &str) -> Packet {
    Packet {
        r#type: PacketType::PacketErr as i32,
        data: message.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// Called for every packet sent (the build's idle limit counts the upload as activity).
pub type Touch = Arc<dyn Fn() + Send + Sync>;

/// The `FileSync` service of a session.
pub struct FileSyncService {
    locals: Locals,
    /// planner's own failure while sending, for the build's error.
    failure: Arc<Mutex<Option<String>>>,
    touch: Touch,
}

impl FileSyncService {
    pub fn new(locals: Locals, failure: Arc<Mutex<Option<String>>>, touch: Touch) -> Self {
        FileSyncService {
            locals,
            failure,
            touch,
        }
    }
}

/// Records the first failure.
fn record(failure: &Mutex<Option<String>>, message: String) {
    if let Ok(mut slot) = failure.lock() {
        slot.get_or_insert(message);
    }
}

/// What the data worker does, in the order BuildKit asked.
enum Job {
    Send(u32),
    Fin,
}

type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = PacketStream;
    type TarStreamStream = PacketStream;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<PacketStream>, Status> {
        let req = Asked::from_metadata(request.metadata()).map_err(|e| {
            record(&self.failure, format!("BuildKit's request: {e}"));
            Status::invalid_argument(e)
        })?;
        let Some((root, skip_git)) = self.locals.dir(&req.dir) else {
            return Err(Status::not_found(format!(
                "no access allowed to dir {:?}",
                req.dir
            )));
        };
        let root = root.to_path_buf();
        let rules = {
            let (root, req) = (root.clone(), req.clone());
            tokio::task::spawn_blocking(move || FsutilRules::new(&root, &req))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
        };
        let rules = rules.map_err(|e| {
            record(&self.failure, e.to_string());
            Status::invalid_argument(e.to_string())
        })?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let files: Files = Arc::default();
        let (jobs_tx, jobs_rx) = mpsc::channel(JOBS_CAPACITY);
        spawn_walk(
            root,
            skip_git,
            rules,
            self.locals.mtime_ns,
            tx.clone(),
            files.clone(),
            self.failure.clone(),
        );
        spawn_data(jobs_rx, tx.clone(), files, self.failure.clone());
        spawn_requests(request.into_inner(), jobs_tx, tx);
        let touch = self.touch.clone();
        let stream = futures_util::StreamExt::inspect(
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|p| (p, rx)) },
            ),
            move |_| touch(),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn tar_stream(
        &self,
        _request: Request<Streaming<Packet>>,
    ) -> Result<Response<PacketStream>, Status> {
        Err(Status::unimplemented(
            "planner sends contexts with diffcopy",
        ))
    }
}

/// Walks the local on a blocking thread: every `STAT`, then the empty one; a failure goes to
/// BuildKit as `ERR` and is recorded.
fn spawn_walk(
    root: PathBuf,
    skip_git: bool,
    rules: FsutilRules,
    mtime_ns: i64,
    tx: mpsc::Sender<Result<Packet, Status>>,
    files: Files,
    failure: Arc<Mutex<Option<String>>>,
) {
    tokio::task::spawn_blocking(move || {
        let mut sink = StatSink {
            tx: tx.clone(),
            files,
            next: 0,
            mtime_ns,
        };
        let walked = context::walk_with(&root, &rules, skip_git, &mut sink);
        match walked {
            Ok(stats) => {
                tracing::debug!(?stats, root = %root.display(), "build context listed to BuildKit");
                let end = Packet {
                    r#type: PacketType::PacketStat as i32,
                    ..Default::default()
                };
                let _ = tx.blocking_send(Ok(end));
            }
            Err(ContextError::Abandoned) => {}
            Err(e) => {
                let message = e.to_string();
                let _ = tx.blocking_send(Ok(err_packet(&message)));
                record(&failure, message);
            }
        }
    });
}

/// Serves the requested files in order on a blocking thread, then answers `FIN`.
fn spawn_data(
    mut jobs: mpsc::Receiver<Job>,
    tx: mpsc::Sender<Result<Packet, Status>>,
    files: Files,
    failure: Arc<Mutex<Option<String>>>,
) {
    tokio::task::spawn_blocking(move || {
        while let Some(job) = jobs.blocking_recv() {
            let id = match job {
                Job::Fin => {
                    let fin = Packet {
                        r#type: PacketType::PacketFin as i32,
                        ..Default::default()
                    };
                    let _ = tx.blocking_send(Ok(fin));
                    return;
                }
                Job::Send(id) => id,
            };
            let file = files
                .lock()
                .ok()
                .and_then(|f| f.get(&id).map(|r| (r.abs.clone(), r.meta.clone())));
            let sent = match file {
                Some((abs, meta)) => send_file(&tx, id, &abs, &meta),
                None => Err(format!("invalid file id {id}")),
            };
            if let Err(message) = sent {
                let _ = tx.blocking_send(Ok(err_packet(&message)));
                record(&failure, message);
                return;
            }
        }
    });
}

/// One file's bytes as `DATA` packets, then the empty one. `Err` on a read failure (or an
/// upload that went away).
fn send_file(
    tx: &mpsc::Sender<Result<Packet, Status>>,
    id: u32,
    abs: &Path,
    meta: &Metadata,
) -> Result<(), String> {
    let gone = |_| "the build context upload was abandoned".to_owned();
    let failed = |e: io::Error| format!("cannot read {}: {e}", abs.display());
    let mut file = context::open_regular(abs, meta).map_err(failed)?;
    let mut buf = vec![0u8; DATA_CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(failed)?;
        let packet = Packet {
            r#type: PacketType::PacketData as i32,
            id,
            data: buf[..n].to_vec(),
            ..Default::default()
        };
        tx.blocking_send(Ok(packet)).map_err(gone)?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Reads BuildKit's packets: requests go to the data worker, `FIN` after them; anything else
/// ends the transfer.
fn spawn_requests(
    mut incoming: Streaming<Packet>,
    jobs: mpsc::Sender<Job>,
    tx: mpsc::Sender<Result<Packet, Status>>,
) {
    tokio::spawn(async move {
        loop {
            let packet = match incoming.message().await {
                Ok(Some(p)) => p,
                Ok(None) | Err(_) => return,
            };
            match PacketType::try_from(packet.r#type) {
                Ok(PacketType::PacketReq) => {
                    if jobs.send(Job::Send(packet.id)).await.is_err() {
                        return;
                    }
                }
                Ok(PacketType::PacketFin) => {
                    let _ = jobs.send(Job::Fin).await;
                    return;
                }
                // BuildKit's own failure: the build's error tells it.
                Ok(PacketType::PacketErr) => return,
                _ => {
                    let message = format!("unexpected packet type {}", packet.r#type);
                    let _ = tx.send(Ok(err_packet(&message))).await;
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::NoHost;
    use tempfile::TempDir;

    fn tree(files: &[(&str, &str)]) -> TempDir {
        let dir = TempDir::new().unwrap();
        for (rel, content) in files {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        dir
    }

    struct Names(Vec<String>);

    impl Sink for Names {
        fn emit(&mut self, entry: &Entry<'_>) -> Result<(), ContextError> {
            self.0.push(entry.rel.to_owned());
            Ok(())
        }
    }

    fn request(exclude: &[&str], follow: &[&str]) -> Asked {
        let list = |l: &[&str]| (!l.is_empty()).then(|| l.iter().map(|s| s.to_string()).collect());
        Asked {
            dir: LOCAL_CONTEXT.into(),
            include: None,
            exclude: list(exclude),
            follow: list(follow),
        }
    }

    fn selected(dir: &TempDir, exclude: &[&str], follow: &[&str]) -> Vec<String> {
        let rules = FsutilRules::new(dir.path(), &request(exclude, follow)).unwrap();
        let mut names = Names(Vec::new());
        context::walk_with(dir.path(), &rules, true, &mut names).unwrap();
        names.0
    }

    #[test]
    fn nothing_is_forced_in() {
        let dir = tree(&[
            (".dockerignore", "x"),
            ("Dockerfile", "FROM scratch"),
            ("docker/Dockerfile", "x"),
            ("app", "a"),
        ]);
        let got = selected(&dir, &["Dockerfile", ".dockerignore", "docker"], &[]);
        assert_eq!(got, ["app"]);
    }

    #[test]
    fn a_wildcard_exception_opens_every_excluded_directory() {
        let dir = tree(&[
            ("keep.txt", ""),
            ("a/keep.txt", ""),
            ("a/x", ""),
            ("b/c/keep.txt", ""),
        ]);
        assert_eq!(
            selected(&dir, &["*", "!*/keep.txt"], &[]),
            ["a", "a/keep.txt"]
        );
        let deep = selected(&dir, &["*", "!**/keep.txt"], &[]);
        assert_eq!(
            deep,
            ["a", "a/keep.txt", "b", "b/c", "b/c/keep.txt", "keep.txt"]
        );
        // A literal exception opens only the directories it names (like the classic CLI).
        assert_eq!(
            selected(&dir, &["*", "!a/keep.txt"], &[]),
            ["a", "a/keep.txt"]
        );
        assert_eq!(
            selected(&dir, &["a", "!b/keep.txt"], &[]),
            ["b", "b/c", "b/c/keep.txt", "keep.txt"]
        );
    }

    #[test]
    fn a_trailing_glob_does_not_make_an_exception_a_wildcard() {
        let dir = tree(&[("a/b/x", ""), ("c/y", "")]);
        // `!a/b/*` opens `a` and `a/b` only.
        assert_eq!(selected(&dir, &["*", "!a/b/*"], &[]), ["a", "a/b", "a/b/x"]);
    }

    #[cfg(unix)]
    #[test]
    fn follow_paths_resolve_symlinks_into_includes() {
        let dir = tree(&[
            ("real/target.txt", "t"),
            ("other", "o"),
            ("sub/x", ""),
            ("sub/y", ""),
        ]);
        std::os::unix::fs::symlink("real/target.txt", dir.path().join("link.txt")).unwrap();
        std::os::unix::fs::symlink("/real", dir.path().join("abs")).unwrap();
        let got = selected(&dir, &["sub/x"], &["link.txt", "sub"]);
        assert_eq!(got, ["link.txt", "real", "real/target.txt", "sub", "sub/y"]);
        // An absolute link resolves inside the local; a path leaving it resolves to nothing.
        let got = selected(&dir, &[], &["abs/target.txt", "../other"]);
        assert_eq!(got, ["abs", "real", "real/target.txt"]);
        // A wildcard follow path resolves the links it matches.
        let got = selected(&dir, &[], &["l*.txt"]);
        assert_eq!(got, ["link.txt", "real", "real/target.txt"]);
        // `.` means everything.
        let everything = [
            "abs",
            "link.txt",
            "other",
            "real",
            "real/target.txt",
            "sub",
            "sub/x",
            "sub/y",
        ];
        assert_eq!(selected(&dir, &[], &[".", "other"]), everything);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_ends() {
        let dir = tree(&[("x", "")]);
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        assert_eq!(selected(&dir, &[], &["a"]), ["a", "b"]);
    }

    #[test]
    fn bad_patterns_are_errors_naming_them() {
        let dir = tree(&[("a", "")]);
        let rules = FsutilRules::new(dir.path(), &request(&["[z-a]"], &[])).unwrap();
        let err = context::walk_with(dir.path(), &rules, true, &mut Names(Vec::new())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exclude patterns BuildKit sent"), "{text}");
        assert!(text.contains("\"[z-a]\""), "{text}");
        let refused = FsutilRules::new(dir.path(), &request(&["a", "["], &[]));
        assert!(matches!(refused, Err(ContextError::Patterns { .. })));
    }

    #[test]
    fn metadata_options_are_read_and_unescaped() {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("dir-name", "context".parse().unwrap());
        md.append("exclude-patterns", "a%C3%A9".parse().unwrap());
        md.append("exclude-patterns", "b+c".parse().unwrap());
        md.insert("exclude-patterns-encoded", "1".parse().unwrap());
        md.append("followpaths", "x%20y".parse().unwrap());
        let req = Asked::from_metadata(&md).unwrap();
        assert_eq!(req.dir, "context");
        assert_eq!(req.exclude.unwrap(), ["aé", "b c"]);
        assert_eq!(req.follow.unwrap(), ["x%20y"], "not encoded: as sent");
        assert_eq!(req.include, None);
    }

    #[test]
    fn the_dockerfile_local_must_stay_in_the_checkout() {
        let dir = tree(&[("docker/Dockerfile", ""), ("Dockerfile", "")]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (locals, name) = rt
            .block_on(Locals::new(dir.path(), "./docker//Dockerfile", &NoHost))
            .unwrap();
        assert_eq!(name, "Dockerfile");
        assert!(locals.dockerfile.ends_with("docker"));
        assert!(!locals.dir(LOCAL_DOCKERFILE).unwrap().1);
        let (locals, _) = rt
            .block_on(Locals::new(dir.path(), "Dockerfile", &NoHost))
            .unwrap();
        assert!(locals.dir(LOCAL_DOCKERFILE).unwrap().1);
        assert!(locals.dir("elsewhere").is_none());
        for bad in ["../Dockerfile", "docker/../../x/Dockerfile", "."] {
            assert!(
                rt.block_on(Locals::new(dir.path(), bad, &NoHost)).is_err(),
                "{bad}"
            );
        }
    }
}
