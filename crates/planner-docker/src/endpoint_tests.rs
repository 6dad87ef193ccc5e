use std::collections::HashMap;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned().filter(|v| !v.is_empty())
}

fn resolve(flag: Option<&str>, pairs: &[(&str, &str)]) -> Result<Endpoint, EndpointError> {
    resolve_with(flag, &vars(pairs))
}

#[test]
fn nothing_set_is_the_default_socket() {
    let e = resolve(None, &[]).unwrap();
    assert_eq!(e.transport, Transport::Unix("/var/run/docker.sock".into()));
    assert_eq!(e.source, "DOCKER_HOST is unset");
}

#[test]
fn tcp_with_tls_verify_uses_cert_path_and_the_tls_port() {
    let e = resolve(
        None,
        &[
            ("DOCKER_HOST", "tcp://10.0.0.5"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
        ],
    )
    .unwrap();
    let Transport::Tcp { authority, tls } = e.transport else {
        panic!("{:?}", e.transport)
    };
    assert_eq!(authority, "10.0.0.5:2376");
    let tls = tls.unwrap();
    assert_eq!(tls.ca(), PathBuf::from("/certs/ca.pem"));
    assert_eq!(tls.key(), PathBuf::from("/certs/key.pem"));
}

#[test]
fn cert_path_defaults_to_the_docker_config_dir() {
    let tcp = ("DOCKER_HOST", "tcp://h:1");
    let verify = ("DOCKER_TLS_VERIFY", "1");
    for (pairs, dir) in [
        (vec![tcp, verify, ("HOME", "/home/u")], "/home/u/.docker"),
        (
            vec![tcp, verify, ("DOCKER_CONFIG", "/cfg"), ("HOME", "/h")],
            "/cfg",
        ),
    ] {
        let e = resolve(None, &pairs).unwrap();
        let Transport::Tcp { tls: Some(tls), .. } = e.transport else {
            panic!("no TLS")
        };
        assert_eq!(tls.dir, PathBuf::from(dir));
    }
}

#[test]
fn plain_tcp_defaults_to_2375_and_tls_alone_is_refused() {
    let e = resolve(None, &[("DOCKER_HOST", "tcp://[::1]")]).unwrap();
    assert_eq!(
        e.transport,
        Transport::Tcp {
            authority: "[::1]:2375".into(),
            tls: None
        }
    );
    let err = resolve(None, &[("DOCKER_HOST", "tcp://h:1"), ("DOCKER_TLS", "1")]).unwrap_err();
    assert!(err.to_string().contains("without verifying"), "{err}");
    assert!(
        err.to_string().contains("help: set DOCKER_TLS_VERIFY=1"),
        "{err}"
    );
}

#[test]
fn the_flag_wins_over_docker_host_and_keeps_env_tls() {
    let e = resolve(
        Some("tcp://127.0.0.1:9"),
        &[
            ("DOCKER_HOST", "unix:///x.sock"),
            ("DOCKER_TLS_VERIFY", "1"),
        ],
    )
    .unwrap();
    assert_eq!(e.source, "--engine is tcp://127.0.0.1:9");
    assert!(matches!(e.transport, Transport::Tcp { tls: Some(_), .. }));
}

#[test]
fn ssh_addresses() {
    let e = resolve(None, &[("DOCKER_HOST", "ssh://ci@build-1:2222")]).unwrap();
    assert_eq!(
        e.transport,
        Transport::Ssh(SshTarget {
            user: Some("ci".into()),
            host: "build-1".into(),
            port: Some(2222)
        })
    );
    for bad in ["ssh://u:pw@h", "ssh://h/path", "ssh://-oProxyCommand=x"] {
        let err = resolve(None, &[("DOCKER_HOST", bad)]).unwrap_err();
        assert!(
            err.to_string().contains("help: use unix://"),
            "{bad}: {err}"
        );
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}

#[test]
fn bad_addresses_say_why_and_the_fix() {
    for (bad, why) in [
        ("127.0.0.1:2375", "no scheme"),
        ("unix://rel.sock", "absolute"),
        ("tcp://h:1/path", "nothing may follow"),
        ("tcp://u:secret@h:1", "no user or password"),
        ("npipe:////./pipe/docker_engine", "named pipes"),
        ("http://h:1", "unknown scheme"),
        ("tcp://h:99999", "invalid port"),
    ] {
        let err = resolve(None, &[("DOCKER_HOST", bad)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{bad}: {err}");
        assert!(err.contains("DOCKER_HOST is"), "{bad}: {err}");
        assert!(!err.contains("secret"), "{err}");
    }
    assert!(check_address("tcp://127.0.0.1:2376").is_ok());
    assert!(check_address("bogus").unwrap_err().contains("--engine"));
}

/// A docker config dir with a context `name` whose endpoint is `host`.
fn context_dir(name: &str, meta: &str, tls: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let id = hex(&Sha256::digest(name.as_bytes()));
    let meta_dir = dir.path().join("contexts/meta").join(&id);
    std::fs::create_dir_all(&meta_dir).unwrap();
    std::fs::write(meta_dir.join("meta.json"), meta).unwrap();
    if tls {
        std::fs::create_dir_all(dir.path().join("contexts/tls").join(&id).join("docker")).unwrap();
    }
    dir
}

fn meta(name: &str, host: &str) -> String {
    format!(
        r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
    )
}

#[test]
fn contexts_from_docker_context_or_current_context() {
    let dir = context_dir("ci", &meta("ci", "tcp://10.1.1.1:2376"), true);
    let cfg = dir.path().to_str().unwrap();
    let e = resolve(None, &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "ci")]).unwrap();
    assert!(
        e.source.contains("\"ci\" (from DOCKER_CONTEXT)"),
        "{}",
        e.source
    );
    let Transport::Tcp { tls: Some(tls), .. } = e.transport else {
        panic!("the context's TLS material is used")
    };
    assert!(tls.dir.ends_with("docker"));
    std::fs::write(dir.path().join("config.json"), r#"{"currentContext":"ci"}"#).unwrap();
    let e = resolve(None, &[("DOCKER_CONFIG", cfg)]).unwrap();
    assert!(e.source.contains("currentContext in"), "{}", e.source);
    // DOCKER_HOST wins over both; "default" is the default socket.
    let e = resolve(
        None,
        &[
            ("DOCKER_CONFIG", cfg),
            ("DOCKER_CONTEXT", "ci"),
            ("DOCKER_HOST", "unix:///d.sock"),
        ],
    )
    .unwrap();
    assert_eq!(e.transport, Transport::Unix("/d.sock".into()));
    let e = resolve(
        None,
        &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "default")],
    )
    .unwrap();
    assert_eq!(e.host, DEFAULT_HOST);
}

#[test]
fn broken_contexts_are_named_with_the_fix() {
    let dir = context_dir("x", "{not json", false);
    let cfg = dir.path().to_str().unwrap();
    for (name, want) in [("x", "not JSON"), ("missing", "meta.json")] {
        let err = resolve(None, &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", name)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("Docker context {name:?}")), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(err.contains("help: `docker context ls`"), "{err}");
    }
    let skip = meta("s", "tcp://h:1").replace("false", "true");
    let dir = context_dir("s", &skip, false);
    let err = resolve(
        None,
        &[
            ("DOCKER_CONFIG", dir.path().to_str().unwrap()),
            ("DOCKER_CONTEXT", "s"),
        ],
    )
    .unwrap_err();
    assert!(err.to_string().contains("SkipTLSVerify"), "{err}");
}

#[test]
fn a_config_json_that_is_not_a_file_or_not_json_names_no_context() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("config.json"), "garbage").unwrap();
    assert_eq!(
        resolve(None, &[("DOCKER_CONFIG", cfg)]).unwrap().host,
        DEFAULT_HOST
    );
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let fifo = std::ffi::CString::new(format!("{cfg}/config.json")).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    assert_eq!(
        resolve(None, &[("DOCKER_CONFIG", cfg)]).unwrap().host,
        DEFAULT_HOST
    );
}

#[test]
fn tls_variables_leave_unix_and_ssh_alone() {
    for host in ["unix:///run/docker.sock", "ssh://h"] {
        for tls in [("DOCKER_TLS_VERIFY", "1"), ("DOCKER_TLS", "1")] {
            let e = resolve(None, &[("DOCKER_HOST", host), tls]).unwrap();
            assert!(!matches!(e.transport, Transport::Tcp { .. }), "{host}");
        }
    }
}
