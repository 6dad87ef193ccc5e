//! Registry credentials, found as the docker CLI finds them, and the engine's
//! `X-Registry-Auth` value.
//!
//! The file is `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`; a missing file
//! means no credentials, a malformed one is an error naming it. For a registry key (`host[:port]`,
//! `https://index.docker.io/v1/` for Docker Hub) the lookup order is the CLI's:
//! `credHelpers[key]`, else `credsStore` (both run `docker-credential-<name> get`), else
//! `auths[key]` (`auth` = base64 `user:pass`, or `username`/`password`, or `identitytoken`);
//! an `auths` key written as a URL (`https://host`, `http://host/v2/`) matches its host, as the
//! CLI's `ConvertToHostname` does. A helper gets the key on stdin and answers
//! `{"ServerURL","Username","Secret"}` (Username `<token>`: the secret is an identity token);
//! "credentials not found" means none. A helper runs in its own process group, for at most
//! [`HELPER_TIMEOUT`], its output capped at [`HELPER_OUTPUT_CAP`]; the group is killed when it
//! overruns or the lookup is abandoned. Every secret is registered with
//! [`planner_base::mask::register_secret`] the moment it is read.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::RegistryError;
use planner_base::mask::register_secret;

/// How long a credential helper may run.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a credential helper may print.
pub const HELPER_OUTPUT_CAP: usize = 64 * 1024;
/// The largest `config.json` read.
pub const CONFIG_CAP: u64 = 4 * 1024 * 1024;
/// What helpers answer (on stdout) when they hold nothing for the server.
const NOT_FOUND: &str = "credentials not found";
/// The helper protocol's username for an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// Credentials for one registry. `Debug` shows the username only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    /// The password, or the identity (refresh) token when `identity_token`.
    pub secret: String,
    pub identity_token: bool,
    /// Where they came from, for messages (`auths in /root/.docker/config.json`).
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"***")
            .field("identity_token", &self.identity_token)
            .field("source", &self.source)
            .finish()
    }
}

impl Credentials {
    fn new(username: &str, secret: &str, identity_token: bool, source: String) -> Credentials {
        register_secret(secret);
        Credentials {
            username: username.to_owned(),
            secret: secret.to_owned(),
            identity_token,
            source,
        }
    }

    /// The `Authorization: Basic` value for username and password (`None` for an identity
    /// token, which is only good at a token endpoint). Registered as a secret.
    pub fn basic_header(&self) -> Option<String> {
        if self.identity_token {
            return None;
        }
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.secret));
        register_secret(&encoded);
        Some(format!("Basic {encoded}"))
    }
}

/// The `X-Registry-Auth` value the engine expects for a pull: base64url (RFC 4648 §5, padded,
/// as moby's `authconfig.Encode`; its `Decode` uses Go's padded `URLEncoding` and silently pulls
/// anonymously when decoding fails) of `{"username","password","serveraddress"}`, or of
/// `{"identitytoken","serveraddress"}` for an identity token. `server` is the registry's
/// [`auth_key`](planner_base::reference::ImageRef::auth_key). The value is registered as a secret.
pub fn engine_auth(creds: &Credentials, server: &str) -> String {
    #[derive(serde::Serialize)]
    struct AuthConfig<'a> {
        #[serde(skip_serializing_if = "str::is_empty")]
        username: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        password: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        identitytoken: &'a str,
        serveraddress: &'a str,
    }
    let config = match creds.identity_token {
        true => AuthConfig {
            username: "",
            password: "",
            identitytoken: &creds.secret,
            serveraddress: server,
        },
        false => AuthConfig {
            username: &creds.username,
            password: &creds.secret,
            identitytoken: "",
            serveraddress: server,
        },
    };
    let json = serde_json::to_vec(&config).expect("strings always serialize");
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(json);
    register_secret(&encoded);
    encoded
}

/// Where credentials are looked up: one `config.json` and the search path for
/// `docker-credential-*` helpers.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The config file, `None` when neither `DOCKER_CONFIG` nor `HOME` is set.
    path: Option<PathBuf>,
    /// `PATH`-style directories searched for helpers.
    helper_path: Option<OsString>,
    helper_timeout: Duration,
}

impl DockerConfig {
    /// The docker CLI's file: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`;
    /// helpers are searched on `PATH`.
    pub fn from_env() -> DockerConfig {
        let non_empty = |var| std::env::var_os(var).filter(|v| !v.is_empty());
        let path = match (non_empty("DOCKER_CONFIG"), non_empty("HOME")) {
            (Some(dir), _) => Some(PathBuf::from(dir).join("config.json")),
            (None, Some(home)) => Some(PathBuf::from(home).join(".docker/config.json")),
            (None, None) => None,
        };
        DockerConfig {
            path,
            helper_path: std::env::var_os("PATH"),
            helper_timeout: HELPER_TIMEOUT,
        }
    }

    /// A given config file (helpers still searched on `PATH`).
    pub fn at(path: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig {
            path: Some(path.into()),
            ..DockerConfig::from_env()
        }
    }

    /// Searches helpers in `dirs` (`PATH` syntax) instead of `PATH`.
    pub fn with_helper_path(mut self, dirs: impl Into<OsString>) -> DockerConfig {
        self.helper_path = Some(dirs.into());
        self
    }

    /// Bounds each helper run by `limit` instead of [`HELPER_TIMEOUT`].
    pub fn with_helper_timeout(mut self, limit: Duration) -> DockerConfig {
        self.helper_timeout = limit;
        self
    }

    /// The file read, for messages.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "no docker config: neither DOCKER_CONFIG nor HOME is set".to_owned(),
        }
    }

    /// The credentials for registry key `key` (see the module doc for the order).
    pub async fn lookup(&self, key: &str) -> Result<Option<Credentials>, RegistryError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let Some(file) = read_config(path)? else {
            return Ok(None);
        };
        let helper = file
            .cred_helpers
            .as_ref()
            .and_then(|helpers| helpers.get(key))
            .map(|name| (name, "credHelpers"))
            .or_else(|| file.creds_store.as_ref().map(|name| (name, "credsStore")))
            .filter(|(name, _)| !name.is_empty());
        match helper {
            Some((name, field)) => self.run_helper(name, field, key).await,
            None => auths_entry(&file, key, path),
        }
    }

    async fn run_helper(
        &self,
        name: &str,
        field: &str,
        key: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let program = format!("docker-credential-{name}");
        let config = self.describe();
        let fail = |detail: String, help: String| RegistryError::Credentials {
            host: key.to_owned(),
            detail,
            help,
        };
        if !is_helper_name(name) {
            return Err(fail(
                format!(
                    "{field} names helper {:?}, which is not a program name",
                    name
                ),
                format!("fix {field} in {config}"),
            ));
        }
        let Some(exe) = find_program(&program, self.helper_path.as_deref()) else {
            return Err(fail(
                format!("{program} (from {field} in {config}) was not found on PATH"),
                format!("install {program}, or remove the {field} entry from {config}"),
            ));
        };
        let source = format!("{program} ({field} in {config})");
        let out = run_bounded(&exe, key, self.helper_timeout)
            .await
            .map_err(|e| fail(format!("{program} get: {e}"), helper_help(&program, key)))?;
        parse_helper_answer(&out, &source)
            .map_err(|e| fail(format!("{program} get: {e}"), helper_help(&program, key)))
    }
}

fn helper_help(program: &str, key: &str) -> String {
    format!(
        "check that `echo {key} | {program} get` prints the credentials (docker login may fix it)"
    )
}

/// The parts of `config.json` planner reads.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    auths: Option<HashMap<String, AuthEntry>>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers")]
    cred_helpers: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The parsed file; `None` when it does not exist.
fn read_config(path: &Path) -> Result<Option<ConfigFile>, RegistryError> {
    let bad = |detail: String| RegistryError::Config {
        path: path.display().to_string(),
        detail,
    };
    // Non-blocking, so a FIFO in its place cannot hang the run (symlinks are followed: dotfile
    // managers link config.json); only a regular file is read.
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    if !file.metadata().map_err(|e| bad(e.to_string()))?.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, CONFIG_CAP + 1), &mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > CONFIG_CAP {
        return Err(bad(format!("larger than {CONFIG_CAP} bytes")));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(ConfigFile::default()));
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| bad(format!("invalid JSON: {e}")))
}

/// `auths[key]`, else the entry whose key, read as a URL, names host `key`.
fn auths_entry(
    file: &ConfigFile,
    key: &str,
    path: &Path,
) -> Result<Option<Credentials>, RegistryError> {
    let Some(auths) = &file.auths else {
        return Ok(None);
    };
    let found = auths.get_key_value(key).or_else(|| {
        let mut keys: Vec<&String> = auths.keys().collect();
        keys.sort();
        keys.into_iter()
            .find(|k| convert_to_hostname(k) == key)
            .and_then(|k| auths.get_key_value(k))
    });
    match found {
        Some((entry_key, entry)) => entry_credentials(entry, entry_key, path),
        None => Ok(None),
    }
}

fn entry_credentials(
    entry: &AuthEntry,
    entry_key: &str,
    path: &Path,
) -> Result<Option<Credentials>, RegistryError> {
    let source = format!("auths[{entry_key:?}] in {}", path.display());
    let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (mut username, mut password) = (non_empty(&entry.username), non_empty(&entry.password));
    if let Some(auth) = non_empty(&entry.auth) {
        register_secret(&auth);
        let (user, pass) = decode_auth(&auth).map_err(|detail| RegistryError::Config {
            path: path.display().to_string(),
            detail: format!("auths[{entry_key:?}].auth: {detail}"),
        })?;
        (username, password) = (Some(user), Some(pass));
    }
    if let Some(token) = non_empty(&entry.identitytoken) {
        let user = username.unwrap_or_default();
        return Ok(Some(Credentials::new(&user, &token, true, source)));
    }
    Ok(match (username, password) {
        (Some(user), Some(pass)) if !pass.is_empty() => {
            Some(Credentials::new(&user, &pass, false, source))
        }
        _ => None,
    })
}

/// The CLI's `decodeAuth`: standard base64 of `user:password`, a non-empty user, NULs trimmed
/// off the password.
fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| "not valid base64 (expected base64 of user:password)".to_owned())?;
    let text =
        String::from_utf8(bytes).map_err(|_| "decodes to bytes that are not UTF-8".to_owned())?;
    register_secret(&text);
    match text.split_once(':') {
        Some((user, pass)) if !user.is_empty() => {
            let pass = pass.trim_matches('\0');
            register_secret(pass);
            Ok((user.to_owned(), pass.to_owned()))
        }
        _ => Err("does not decode to user:password".to_owned()),
    }
}

/// The CLI's `ConvertToHostname`: `scheme://host[:port]/...` -> `host[:port]`; other text up to
/// its first `/`.
fn convert_to_hostname(key: &str) -> String {
    let rest = key.split_once("://").map_or(key, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// A helper suffix that is a plain file name (no path separators, no option-like start).
fn is_helper_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != ".."
}

/// The first executable file called `program` in `dirs` (PATH syntax).
fn find_program(program: &str, dirs: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(dirs?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// What a helper printed and how it exited.
struct HelperOutput {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `exe get` with `server` on stdin, in its own process group, for at most `limit`,
/// reading at most [`HELPER_OUTPUT_CAP`] of each stream. The group is killed afterwards, on
/// timeout, and when this future is dropped.
async fn run_bounded(exe: &Path, server: &str, limit: Duration) -> Result<HelperOutput, String> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start it: {e}"))?;
    let _group = planner_base::process::GroupKill::new(child.id());
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async {
        if let Some(stdin) = stdin.as_mut() {
            // A helper that exits without reading closes the pipe: not an error here.
            let _ = stdin.write_all(server.as_bytes()).await;
        }
        drop(stdin);
        let (stdout, stderr) = tokio::join!(read_capped(stdout), read_capped(stderr));
        let (stdout, stderr) = (stdout?, stderr?);
        let status = child.wait().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(HelperOutput {
            success: status.success(),
            stdout,
            stderr,
        })
    };
    match tokio::time::timeout(limit, run).await {
        Ok(out) => out,
        Err(_) => Err(format!(
            "did not finish within {} and was killed",
            humantime::format_duration(limit)
        )),
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(
    stream: Option<R>,
) -> Result<Vec<u8>, String> {
    let Some(stream) = stream else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    stream
        .take(HELPER_OUTPUT_CAP as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    if out.len() > HELPER_OUTPUT_CAP {
        return Err(format!("printed more than {HELPER_OUTPUT_CAP} bytes"));
    }
    Ok(out)
}

/// The helper protocol's answer.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

fn parse_helper_answer(out: &HelperOutput, source: &str) -> Result<Option<Credentials>, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.success {
        if stdout.to_ascii_lowercase().contains(NOT_FOUND) {
            return Ok(None);
        }
        let said = [stdout.trim(), String::from_utf8_lossy(&out.stderr).trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| planner_base::reference::shown(s))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!("failed: {said}"));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("answered something that is not its JSON ({e})"))?;
    register_secret(&answer.secret);
    if answer.secret.is_empty() {
        return Ok(None);
    }
    let token = answer.username == TOKEN_USERNAME;
    let username = if token { "" } else { &answer.username };
    Ok(Some(Credentials::new(
        username,
        &answer.secret,
        token,
        source.to_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use planner_base::reference::DOCKER_HUB_AUTH_KEY;
    use std::os::unix::fs::PermissionsExt;

    fn config(dir: &Path, json: &str) -> DockerConfig {
        let path = dir.join("config.json");
        std::fs::write(&path, json).unwrap();
        DockerConfig::at(path).with_helper_path(dir.as_os_str())
    }

    fn helper(dir: &Path, name: &str, script: &str) {
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[tokio::test]
    async fn auths_entries_in_each_form() {
        let dir = tempfile::tempdir().unwrap();
        let json = format!(
            r#"{{"auths": {{
                "reg.example:5000": {{"auth": "{}"}},
                "https://url.example/v2/": {{"auth": "{}"}},
                "plain.example": {{"username": "u2", "password": "pw-plain-u2"}},
                "tok.example": {{"identitytoken": "refresh-tok-1"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "empty.example": {{}}
            }}}}"#,
            b64("alice:pw-alice-1"),
            b64("bob:pw:with:colons\0\0"),
            b64("hub:pw-hub-1")
        );
        let cfg = config(dir.path(), &json);
        let c = cfg.lookup("reg.example:5000").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str()),
            ("alice", "pw-alice-1")
        );
        assert!(!c.identity_token && c.source.contains("auths[\"reg.example:5000\"]"));
        let c = cfg.lookup("url.example").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str()),
            ("bob", "pw:with:colons")
        );
        let c = cfg.lookup("plain.example").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str()),
            ("u2", "pw-plain-u2")
        );
        let c = cfg.lookup("tok.example").await.unwrap().unwrap();
        assert!(c.identity_token && c.secret == "refresh-tok-1");
        let c = cfg.lookup(DOCKER_HUB_AUTH_KEY).await.unwrap().unwrap();
        assert_eq!(c.username, "hub");
        assert!(cfg.lookup("empty.example").await.unwrap().is_none());
        assert!(cfg.lookup("other.example").await.unwrap().is_none());
        assert!(cfg.lookup("docker.io").await.unwrap().is_none());
        // Every secret read is masked from then on.
        assert_eq!(
            planner_base::mask::mask("x pw-alice-1 refresh-tok-1"),
            "x *** ***"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("pw-hub-1") && shown.contains("***"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn a_fifo_or_directory_in_place_of_the_file_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) on a NUL-terminated path; no memory is shared.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let within = std::time::Duration::from_secs(5);
        for path in [fifo, dir.path().to_owned()] {
            let lookup = DockerConfig::at(&path);
            let err = tokio::time::timeout(within, lookup.lookup("h"))
                .await
                .expect("no hang")
                .unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        // A symlink to a real file is followed (dotfile managers link config.json).
        let real = dir.path().join("real.json");
        std::fs::write(&real, "{}").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(DockerConfig::at(&link).lookup("h").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn missing_empty_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let absent = DockerConfig::at(dir.path().join("nope.json"));
        assert!(absent.lookup("h").await.unwrap().is_none());
        assert!(config(dir.path(), "").lookup("h").await.unwrap().is_none());
        assert!(
            config(dir.path(), "{}")
                .lookup("h")
                .await
                .unwrap()
                .is_none()
        );
        let nulls = r#"{"auths": null, "credsStore": "", "credHelpers": null}"#;
        assert!(
            config(dir.path(), nulls)
                .lookup("h")
                .await
                .unwrap()
                .is_none()
        );
        for bad in [
            "{not json",
            r#"{"auths": []}"#,
            r#"{"auths": {"h": {"auth": "%%%"}}}"#,
            &format!(r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#, b64("nocolon")),
            &format!(r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#, b64(":nouser")),
        ] {
            let err = config(dir.path(), bad).lookup("h").await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, RegistryError::Config { .. }), "{text}");
            assert!(
                text.contains("config.json") && text.contains("help:"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn helpers_in_the_clis_order() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "one",
            r#"read s; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"helper-secret-1"}' "$s" "$s""#,
        );
        helper(
            dir.path(),
            "store",
            r#"read s; case "$s" in known.example) echo '{"Username":"<token>","Secret":"helper-idtok-1"}';; *) echo 'credentials not found in native keychain'; exit 1;; esac"#,
        );
        let json = r#"{"credHelpers": {"reg.example": "one"}, "credsStore": "store",
                       "auths": {"reg.example": {"auth": "eDp5"}, "known.example": {}, "other.example": {"username":"a","password":"b"}}}"#;
        let cfg = config(dir.path(), json);
        let c = cfg.lookup("reg.example").await.unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str()),
            ("u-reg.example", "helper-secret-1")
        );
        assert!(
            c.source.contains("docker-credential-one (credHelpers in"),
            "{}",
            c.source
        );
        let c = cfg.lookup("known.example").await.unwrap().unwrap();
        assert!(c.identity_token && c.username.is_empty() && c.secret == "helper-idtok-1");
        // credsStore answers for every other host; its "not found" is no credentials (auths
        // entries are not consulted, as in the CLI).
        assert!(cfg.lookup("other.example").await.unwrap().is_none());
        assert_eq!(planner_base::mask::mask("helper-secret-1"), "***");
    }

    #[tokio::test]
    async fn helper_failures_are_clear_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        helper(dir.path(), "fails", "echo 'keychain locked' >&2; exit 3");
        helper(dir.path(), "garbage", "echo 'not json'");
        helper(dir.path(), "sleeps", "exec sleep 100");
        helper(
            dir.path(),
            "floods",
            "yes xxxxxxxxxxxxxxxx | head -c 200000",
        );
        let cases = [
            ("fails", "keychain locked"),
            ("garbage", "not its JSON"),
            ("sleeps", "killed"),
            ("floods", "more than"),
            ("absent", "not found on PATH"),
            ("../evil", "not a program name"),
        ];
        for (name, why) in cases {
            let json = format!(r#"{{"credsStore": "{name}"}}"#);
            let cfg = config(dir.path(), &json).with_helper_timeout(Duration::from_secs(1));
            let started = std::time::Instant::now();
            let err = cfg.lookup("h.example").await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(20));
            let text = err.to_string();
            assert!(matches!(err, RegistryError::Credentials { .. }), "{text}");
            assert!(
                text.contains(why) && text.contains("help:"),
                "{name}: {text}"
            );
        }
    }

    #[test]
    fn engine_auth_decodes_as_moby_does() {
        // moby's authconfig.Decode: base64.URLEncoding (padded, '-' and '_'), then JSON.
        let creds = Credentials::new("us?r>", "p+ss/wörd~~", false, String::new());
        for server in ["reg.example:5000", "a", "ab", "abc"] {
            let value = engine_auth(&creds, server);
            assert!(value.len().is_multiple_of(4), "padded: {value}");
            assert!(!value.contains(['+', '/']), "{value}");
            let json = base64::engine::general_purpose::URL_SAFE
                .decode(&value)
                .unwrap();
            let decoded: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(
                decoded,
                serde_json::json!({"username": "us?r>", "password": "p+ss/wörd~~", "serveraddress": server})
            );
            assert_eq!(planner_base::mask::mask(&value), "***");
        }
        let token = Credentials::new("", "id-token-1", true, String::new());
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(engine_auth(&token, "h"))
            .unwrap();
        let decoded: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            decoded,
            serde_json::json!({"identitytoken": "id-token-1", "serveraddress": "h"})
        );
    }

    #[test]
    fn hostnames_of_auths_keys() {
        assert_eq!(convert_to_hostname("https://h.example/v2/"), "h.example");
        assert_eq!(
            convert_to_hostname("http://h.example:5000"),
            "h.example:5000"
        );
        assert_eq!(convert_to_hostname("h.example/v1/"), "h.example");
        assert_eq!(convert_to_hostname("h.example"), "h.example");
        assert_eq!(convert_to_hostname(""), "");
    }
}
