//! A docker credential helper fixture: an executable `docker-credential-<name>` shell script
//! in a tempdir, speaking the docker-credential-helpers protocol (`get` reads the server on
//! stdin, prints `{"ServerURL","Username","Secret"}`; an unknown server prints
//! `credentials not found in native keychain` and exits 1). Every call is logged, so tests
//! can assert who asked for what. Put [`CredHelper::dir`] first on the planner child's PATH
//! ([`CredHelper::path_env`]) and point `DOCKER_CONFIG` at a config written by
//! [`CredHelper::write_cred_helpers_config`] or [`CredHelper::write_creds_store_config`].

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How the helper behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperMode {
    /// Answers `get` for the listed servers.
    Answer,
    /// Exits 1 with this message on stdout for every `get` (a broken helper).
    Fail(String),
    /// Never answers (`sleep`), to test a bounded wait.
    Hang,
}

pub struct CredHelper {
    name: String,
    dir: tempfile::TempDir,
}

impl CredHelper {
    /// A helper that answers `get` for each `(server, username, secret)`. Values must not
    /// contain `'`, `"` or `\` (they are pasted into the script).
    pub fn new(name: &str, entries: &[(&str, &str, &str)]) -> CredHelper {
        CredHelper::with_mode(name, entries, HelperMode::Answer)
    }

    pub fn with_mode(name: &str, entries: &[(&str, &str, &str)], mode: HelperMode) -> CredHelper {
        let dir = tempfile::tempdir().unwrap();
        let helper = CredHelper {
            name: name.to_owned(),
            dir,
        };
        let script = script(&helper.log_path(), entries, &mode);
        let path = helper.program();
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        helper
    }

    /// The name as written in config.json (`credsStore` / `credHelpers` values).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory holding `docker-credential-<name>`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The script's path.
    pub fn program(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("docker-credential-{}", self.name))
    }

    /// `PATH` with [`Self::dir`] first, then the test process's own PATH.
    pub fn path_env(&self) -> OsString {
        let mut path = OsString::from(self.dir.path());
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        path
    }

    /// Every call so far as `(verb, stdin)`, e.g. `("get", "127.0.0.1:5000")`.
    pub fn calls(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(|l| match l.split_once(' ') {
                Some((verb, input)) => (verb.to_owned(), input.to_owned()),
                None => (l.to_owned(), String::new()),
            })
            .collect()
    }

    /// Writes `config_dir/config.json` = `{"credHelpers": {server: name}}`.
    pub fn write_cred_helpers_config(&self, config_dir: &Path, server: &str) -> PathBuf {
        write(
            config_dir,
            serde_json::json!({ "credHelpers": { server: self.name } }),
        )
    }

    /// Writes `config_dir/config.json` = `{"credsStore": name}`.
    pub fn write_creds_store_config(&self, config_dir: &Path) -> PathBuf {
        write(config_dir, serde_json::json!({ "credsStore": self.name }))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }
}

fn write(config_dir: &Path, value: serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(config_dir).unwrap();
    let path = config_dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    path
}

fn script(log: &Path, entries: &[(&str, &str, &str)], mode: &HelperMode) -> String {
    let mut cases = String::new();
    for (server, user, secret) in entries {
        for value in [server, user, secret] {
            assert!(
                !value.contains(['\'', '"', '\\']),
                "credential helper value {value:?} has a quote or backslash"
            );
        }
        cases.push_str(&format!(
            "    '{server}') printf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}\\n' '{server}' '{user}' '{secret}'; exit 0 ;;\n"
        ));
    }
    let get = match mode {
        HelperMode::Answer => format!(
            "  case \"$input\" in\n{cases}  esac\n  echo 'credentials not found in native keychain'\n  exit 1\n"
        ),
        HelperMode::Fail(message) => {
            assert!(!message.contains('\''), "message {message:?} has a quote");
            format!("  echo '{message}'\n  exit 1\n")
        }
        HelperMode::Hang => "  exec sleep 600\n".to_owned(),
    };
    format!(
        "#!/bin/sh\n# planner test credential helper\ninput=$(cat)\nprintf '%s %s\\n' \"$1\" \"$input\" >> '{log}'\n\
         case \"$1\" in\nget)\n{get};;\nlist) echo '{{}}' ;;\nstore|erase) exit 0 ;;\n*) echo \"unknown verb $1\" >&2; exit 1 ;;\nesac\n",
        log = log.display()
    )
}
