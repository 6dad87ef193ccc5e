//! Images in the engine: inspecting (live, or from a view prefetched for deciding a whole
//! graph), tagging, listing and removing (for `status` and `gc`), and the engine's disk usage
//! report (asked again while another client's report runs). Every call is bounded by
//! [`Engine::bounded`].

use std::collections::HashMap;
use std::sync::Arc;

use bollard::query_parameters::TagImageOptions;
use futures_util::StreamExt;

use std::time::Duration;

use crate::engine::{CALL_KEY, Engine, ImageInfo};
use crate::error::{DockerError, api, checked_id};

/// Above this many references, [`Engine::prefetched`] lists images once instead of inspecting
/// each: a listing costs dockerd about as much as 20–40 inspects (and grows with the images it
/// holds), an inspect stays cheap.
pub const LIST_ABOVE: usize = 64;
/// Inspects [`Engine::prefetched`] has in flight at once.
const PREFETCH_CONCURRENCY: usize = 16;

/// Whether a listing filtered by `reference={prefix}*` for `prefixes` answers for `reference`:
/// a `repo:tag` under one of the prefixes with nothing after it but a name and a tag (what the
/// pattern's `*` matches), spelled as the engine lists it. References the engine would rewrite
/// (`docker.io/…`, `library/…`) are left to a live inspect.
fn listing_covers(prefixes: &[String], reference: &str) -> bool {
    let rewritten = ["docker.io/", "index.docker.io/", "library/"]
        .iter()
        .any(|p| reference.starts_with(p));
    !rewritten
        && prefixes.iter().any(|p| {
            reference
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.contains(':') && !rest.contains(['/', '@']))
        })
}

impl Engine {
    /// A view of this engine that has asked about `references` all at once and answers
    /// [`inspect`](Engine::inspect) of them from memory (anything else live). Deciding a graph
    /// asks about two or three tags per runtime, one after the other (the same tag up to three
    /// times): this asks each once, `:latest` first, taking the tags an answer names for
    /// answers too (a warm runtime then costs one round trip), or, above [`LIST_ABOVE`]
    /// references, lists the tags under `image_prefixes` in one call. A reference whose answer
    /// failed is left to a live inspect, which then reports the error. The answers are a
    /// snapshot: for deciding, never for the re-check after a step's lock.
    pub async fn prefetched(&self, references: Vec<String>, image_prefixes: Vec<String>) -> Engine {
        let mut references = references;
        references.sort();
        references.dedup();
        let mut known = HashMap::with_capacity(references.len());
        if references.len() > LIST_ABOVE {
            let mut prefixes = image_prefixes;
            prefixes.sort();
            prefixes.dedup();
            if let Ok(tags) = self.list_tags(&prefixes).await {
                for reference in references {
                    if listing_covers(&prefixes, &reference) {
                        let answer = tags.get(&reference).cloned();
                        known.insert(reference, answer);
                    }
                }
            }
        } else {
            // `:latest` first: in the steady state its image also carries the pinned tag, and an
            // inspect names every tag of its image, so one round trip answers both (dockerd
            // answers inspects one at a time, ~0.5 ms each, so round trips are what counts).
            let (first, then): (Vec<String>, Vec<String>) = references
                .iter()
                .cloned()
                .partition(|r| r.ends_with(":latest"));
            for round in [first, then] {
                let round: Vec<String> = round
                    .into_iter()
                    .filter(|r| !known.contains_key(r))
                    .collect();
                let answers: Vec<_> = futures_util::stream::iter(round)
                    .map(|reference| async move {
                        let answer = self.inspect_live(&reference).await;
                        (reference, answer)
                    })
                    .buffer_unordered(PREFETCH_CONCURRENCY)
                    .collect()
                    .await;
                for (reference, answer) in answers {
                    let Ok(answer) = answer else { continue };
                    if let Some((info, tags)) = &answer {
                        for tag in tags {
                            if tag != &reference && references.binary_search(tag).is_ok() {
                                known.insert(tag.clone(), Some(info.clone()));
                            }
                        }
                    }
                    known.insert(reference, answer.map(|(info, _)| info));
                }
            }
        }
        Engine {
            known: Some(Arc::new(known)),
            ..self.clone()
        }
    }

    /// Every `repo:tag` under `prefixes`, in one call.
    async fn list_tags(
        &self,
        prefixes: &[String],
    ) -> Result<HashMap<String, ImageInfo>, DockerError> {
        let patterns: Vec<String> = prefixes.iter().map(|p| format!("{p}*")).collect();
        let options = bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([("reference".to_owned(), patterns)])),
            ..Default::default()
        };
        let call = self.docker.list_images(Some(options));
        let images = self
            .bounded("the image list", call)
            .await?
            .map_err(|e| api("list images", "under the image prefixes", &e.to_string()))?;
        let mut tags = HashMap::new();
        for image in images {
            let info = ImageInfo {
                id: checked_id(image.id, "list images").map_err(|e| *e)?,
                labels: image.labels,
            };
            for tag in image.repo_tags {
                if tag != "<none>:<none>" {
                    tags.insert(tag, info.clone());
                }
            }
        }
        Ok(tags)
    }

    /// Inspects an image reference or ID; `None` when the engine has no such image.
    pub async fn inspect(&self, reference: &str) -> Result<Option<ImageInfo>, DockerError> {
        if let Some(answer) = self.known.as_ref().and_then(|k| k.get(reference)) {
            return Ok(answer.clone());
        }
        Ok(self.inspect_live(reference).await?.map(|(info, _)| info))
    }

    /// Asks the engine: the image and every `repo:tag` naming it.
    async fn inspect_live(
        &self,
        reference: &str,
    ) -> Result<Option<(ImageInfo, Vec<String>)>, DockerError> {
        let Some(image) = self.inspect_raw(reference).await? else {
            return Ok(None);
        };
        let id = checked_id(image.id.unwrap_or_default(), "inspect image").map_err(|e| *e)?;
        Ok(Some((
            ImageInfo {
                id,
                labels: image.config.and_then(|c| c.labels).unwrap_or_default(),
            },
            image.repo_tags.unwrap_or_default(),
        )))
    }

    /// The engine's full inspect answer, with a time limit; `None` for a 404.
    async fn inspect_raw(
        &self,
        reference: &str,
    ) -> Result<Option<bollard::models::ImageInspect>, DockerError> {
        let call = self.docker.inspect_image(reference);
        match self
            .bounded(&format!("the inspect of {reference}"), call)
            .await?
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(api("inspect", reference, &e.to_string())),
            Ok(image) => Ok(Some(image)),
        }
    }

    /// Points `reference` (`repo:tag`) at `image`.
    pub async fn tag(&self, image: &str, reference: &str) -> Result<(), DockerError> {
        let (repo, tag) = split_reference(reference);
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        let call = self.docker.tag_image(image, Some(options));
        self.bounded(&format!("the tag {reference}"), call)
            .await?
            .map_err(|e| api("tag", reference, &e.to_string()))
    }
}

/// Splits `repo:tag` at the last `:` that is not part of a registry port.
pub fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    }
}

// ---------------------------------------------------------------------------------------
// Listing and removal, for `planner status` and `planner gc`.
// ---------------------------------------------------------------------------------------

/// An image as listed by the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageEntry {
    pub id: String,
    /// `repo:tag` references (never `<none>:<none>`).
    pub repo_tags: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    /// Total size including layers shared with other images.
    pub size: u64,
    /// Bytes no other image shares, when the engine reports it (API ≥ 1.42).
    pub unique_size: Option<u64>,
}

/// An image as inspected: what the listing says (no unique size), its digest references
/// (`RepoDigests`: `name@sha256:…`, where it was pulled from) and its precise creation time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDetail {
    pub entry: ImageEntry,
    pub repo_digests: Vec<String>,
    /// Nanoseconds since the Unix epoch, when the engine states a valid time.
    pub created_nanos: Option<i128>,
}

/// What removing one image reference did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// The reference is gone; the image was deleted too when `deleted` (it had no other).
    Removed { deleted: bool },
    /// The engine refused: a container uses the image (the message names it).
    InUse(String),
    /// No such reference (already gone).
    Missing,
}

impl Engine {
    /// Images (not intermediate layers) carrying `label`, whatever its value.
    pub async fn list_images_with_label(
        &self,
        label: &str,
    ) -> Result<Vec<ImageEntry>, DockerError> {
        let options = bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![label.to_owned()],
            )])),
            shared_size: true,
            ..Default::default()
        };
        let call = self.docker.list_images(Some(options));
        let images = self
            .bounded("the image list", call)
            .await?
            .map_err(|e| api("list images with label", label, &e.to_string()))?;
        Ok(images
            .into_iter()
            .map(|i| ImageEntry {
                id: i.id,
                repo_tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                labels: i.labels,
                created: i.created,
                size: u64::try_from(i.size).unwrap_or(0),
                unique_size: (i.shared_size >= 0)
                    .then(|| u64::try_from(i.size - i.shared_size).unwrap_or(0)),
            })
            .collect())
    }

    /// Bytes each image holds that no other image shares (what deleting it alone frees), by
    /// image ID, from the engine's disk usage report (`docker system df -v`). For engines
    /// whose image list does not report shared sizes (API < 1.42).
    pub async fn unique_image_sizes(&self) -> Result<HashMap<String, u64>, DockerError> {
        Ok(self
            .disk_usage("of images")
            .await?
            .images
            .unwrap_or_default()
            .into_iter()
            .map(|i| {
                let unique = i.size - i.shared_size.max(0);
                (i.id, u64::try_from(unique).unwrap_or(0))
            })
            .collect())
    }

    /// The engine's disk usage report (`GET /system/df`; `of` names what it is for, in errors).
    /// Docker 20.10 lets one such report run at a time and answers 500 "a disk usage
    /// operation is already running" to any other client asking meanwhile (another `gc`, a
    /// user's `docker system df`): that answer is asked again, with growing pauses, until
    /// the call limit (`[engine] timeout`) since the first ask is spent. Newer engines share
    /// one report among concurrent askers.
    pub(crate) async fn disk_usage(
        &self,
        of: &str,
    ) -> Result<bollard::models::SystemDataUsageResponse, DockerError> {
        let what = format!("the disk usage report {of}");
        let started = std::time::Instant::now();
        let mut pause = DU_FIRST_PAUSE;
        loop {
            if let Some(first) = self.earlier_stall() {
                return Err(first);
            }
            let call = self
                .docker
                .df(None::<bollard::query_parameters::DataUsageOptions>);
            // At least a pause's worth: a sleep that overran a little is no stall.
            let left = self
                .limit
                .saturating_sub(started.elapsed())
                .max(DU_FIRST_PAUSE);
            let answer = tokio::time::timeout(left, call)
                .await
                .map_err(|_| self.stall(&what, self.limit, CALL_KEY))?;
            let e = match answer {
                Ok(usage) => return Ok(usage),
                Err(e) => e,
            };
            let busy = another_operation_running(&e);
            // Up to half the pause again, so that askers that collided do not collide again.
            let wait = pause + pause.mul_f64(fastrand::f64() / 2.0);
            if !busy || started.elapsed() + wait >= self.limit {
                return Err(api("disk usage", of, &du_failure(&e, busy, self.limit)));
            }
            tokio::time::sleep(wait).await;
            pause = (pause * 2).min(DU_MAX_PAUSE);
        }
    }

    /// The creation time of an image as the engine states it (RFC 3339, nanoseconds), or
    /// `None` when there is no such image.
    pub async fn image_created(&self, reference: &str) -> Result<Option<String>, DockerError> {
        Ok(self
            .inspect_raw(reference)
            .await?
            .and_then(|i| i.created)
            .and_then(|t| t.timestamp_nanos_opt())
            .and_then(|n| jiff::Timestamp::from_nanosecond(n.into()).ok())
            .map(|t| t.to_string()))
    }

    /// An image as the engine inspects it, with its digest references; `None` when there
    /// is no such image. For `gc`, which proves a pulled image by these.
    pub async fn inspect_detail(
        &self,
        reference: &str,
    ) -> Result<Option<ImageDetail>, DockerError> {
        let Some(image) = self.inspect_raw(reference).await? else {
            return Ok(None);
        };
        let id = checked_id(image.id.unwrap_or_default(), "inspect image").map_err(|e| *e)?;
        let created_nanos = image
            .created
            .and_then(|t| t.timestamp_nanos_opt())
            .map(i128::from);
        let created = created_nanos.map_or(0, |n| i64::try_from(n / 1_000_000_000).unwrap_or(0));
        let entry = ImageEntry {
            id,
            repo_tags: image
                .repo_tags
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
            labels: image.config.and_then(|c| c.labels).unwrap_or_default(),
            created,
            size: image.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            unique_size: None,
        };
        Ok(Some(ImageDetail {
            entry,
            repo_digests: image.repo_digests.unwrap_or_default(),
            created_nanos,
        }))
    }

    /// Containers (running or not) by the ID of the image they use: their names.
    pub async fn containers_by_image(&self) -> Result<HashMap<String, Vec<String>>, DockerError> {
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let call = self.docker.list_containers(Some(options));
        let containers = self
            .bounded("the container list", call)
            .await?
            .map_err(|e| api("list containers", "(all)", &e.to_string()))?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for c in containers {
            let Some(image) = c.image_id else { continue };
            let name = c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_owned())
                .or(c.id.map(|id| planner_base::ids::short(&id).to_owned()))
                .unwrap_or_default();
            out.entry(image).or_default().push(name);
        }
        Ok(out)
    }

    /// Removes one reference (`repo:tag`) without force: the engine deletes the image only
    /// when no other reference is left, and refuses (409) when a container uses it.
    pub async fn remove_reference(&self, reference: &str) -> Result<RemoveOutcome, DockerError> {
        let options = bollard::query_parameters::RemoveImageOptions {
            force: false,
            noprune: false,
        };
        let call = self.docker.remove_image(reference, Some(options), None);
        match self
            .bounded(&format!("the removal of {reference}"), call)
            .await?
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(RemoveOutcome::Missing),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) => Ok(RemoveOutcome::InUse(message)),
            Err(e) => Err(api("remove", reference, &e.to_string())),
            Ok(items) => Ok(RemoveOutcome::Removed {
                deleted: items.iter().any(|i| i.deleted.is_some()),
            }),
        }
    }
}

/// The first pause before asking for a disk usage report again, and the longest.
const DU_FIRST_PAUSE: Duration = Duration::from_millis(20);
const DU_MAX_PAUSE: Duration = Duration::from_millis(500);

/// Whether the engine refused a call because another client's call of the kind it runs one
/// at a time is under way: 20.10's disk usage ("a disk usage operation is already running")
/// and prunes ("a prune operation is already running").
fn another_operation_running(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code, message }
            if (*status_code == 500 || *status_code == 409)
                && message.contains("operation is already running")
    )
}

/// The detail of a failed disk usage report: the engine's word, and for a report that stayed
/// busy, why and what to do.
fn du_failure(e: &bollard::errors::Error, busy: bool, limit: Duration) -> String {
    if !busy {
        return e.to_string();
    }
    format!(
        "{e}, still after asking again for {}: another client (`docker system df`, another `planner gc`) keeps asking the engine for its disk usage\n  help: run again once that client is done, or raise `{CALL_KEY}` in the [engine] table of runtimes.toml",
        humantime::format_duration(limit)
    )
}

/// Parses an RFC 3339 time as the engine writes it (`2024-05-01T12:34:56.123456789Z`, or
/// with a `+HH:MM` offset) into nanoseconds since the Unix epoch; `None` for anything else
/// (the engine's answers are input too: never a panic).
pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_clients_operation_is_asked_again() {
        let answer =
            |status_code: u16, message: &str| bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: message.to_owned(),
            };
        assert!(another_operation_running(&answer(
            500,
            "a disk usage operation is already running"
        )));
        assert!(another_operation_running(&answer(
            409,
            "a prune operation is already running"
        )));
        assert!(!another_operation_running(&answer(
            500,
            "no space left on device"
        )));
        assert!(!another_operation_running(&answer(404, "page not found")));
        let busy = answer(500, "a disk usage operation is already running");
        let detail = du_failure(&busy, true, Duration::from_secs(60));
        assert!(
            detail.contains("another client") && detail.contains("raise `timeout`"),
            "{detail}"
        );
        assert_eq!(
            du_failure(&busy, false, Duration::from_secs(60)),
            busy.to_string()
        );
    }

    #[test]
    fn listings_cover_only_tags_they_can_answer() {
        let prefixes = [
            "planner-bench/warm-".to_owned(),
            "localhost:5000/org/".to_owned(),
        ];
        let covers = |r: &str| listing_covers(&prefixes, r);
        assert!(covers("planner-bench/warm-codex:latest"));
        assert!(covers("planner-bench/warm-codex:0123456789ab"));
        assert!(covers("localhost:5000/org/codex:latest"));
        assert!(!covers("planner-bench/other:latest"));
        assert!(!covers("planner-bench/warm-codex"), "no tag");
        assert!(
            !covers("planner-bench/warm-x/y:latest"),
            "the pattern's * stops at /"
        );
        assert!(!covers("sha256:0123"));
        let hub = ["docker.io/org/".to_owned()];
        assert!(
            !listing_covers(&hub, "docker.io/org/codex:latest"),
            "listed as org/codex"
        );
    }

    #[test]
    fn references_split_at_the_tag_not_the_port() {
        assert_eq!(split_reference("a/b:1234abcd"), ("a/b", "1234abcd"));
        assert_eq!(
            split_reference("localhost:5000/a/b:latest"),
            ("localhost:5000/a/b", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/a/b"),
            ("localhost:5000/a/b", "latest")
        );
    }

    #[test]
    fn rfc3339_times_parse_to_nanoseconds() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2026-11-23T10:50:51.897481778Z"),
            Some(1_795_431_051_897_481_778)
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-11-23T11:50:51.5+01:00"),
            Some(1_795_431_051_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-02-29T00:00:00Z"),
            Some(951_782_400 * 1_000_000_000)
        );
        assert!(parse_rfc3339_nanos("yesterday").is_none());
        assert!(parse_rfc3339_nanos("2026-13-01T00:00:00Z").is_none());
    }

    #[test]
    fn rfc3339_garbage_is_none_never_a_panic() {
        // Each of these panicked the hand-rolled parser (byte slicing inside a character).
        for text in [
            "2026-11-23T10:50:51.\u{e9}Z",
            "2026-11-23T10:50:51\u{e9}\u{e9}\u{e9}",
            "2026-11-23T10:50:51.5+0\u{e9}:00",
            "\u{e9}\u{e9}-11-23T10:50:51Z",
        ] {
            assert!(parse_rfc3339_nanos(text).is_none(), "{text:?}");
        }
        // Random strings over a timestamp's alphabet plus multi-byte characters.
        let alphabet: Vec<char> = "0123456789-:.TZz+ \u{e9}\u{1f600}".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse_rfc3339_nanos(&text);
            let _ = parse_rfc3339_nanos(&format!("2026-11-23T10:50:51{text}"));
        }
    }
}
