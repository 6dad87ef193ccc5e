//! A second private `dockerd` for the remote-engine tests: it listens on a unix socket and
//! on 127.0.0.1:<free port> with `--tlsverify`, with a CA, a server certificate for the IP
//! 127.0.0.1 and client certificates made here with openssl (plus a client pair and a CA
//! from another, untrusted CA). Own data, exec and pid roots, no bridge, no iptables (as
//! scripts/test-env.sh starts the suite's engine); the suite's base image is copied in.
//!
//! One engine per test binary ([`TlsEngine::shared`]): dockerd runs under a small `sh` that
//! waits on a pipe this process holds open, so when the test binary exits, however it exits,
//! the pipe closes, and the shell stops dockerd and removes its directory.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::harness::BASE_IMAGE;

pub struct TlsEngine {
    pub dir: PathBuf,
    pub port: u16,
    /// The shell whose stdin this process holds open: closed (at exit), it stops dockerd.
    _shell: Mutex<std::process::Child>,
}

static SHARED: OnceLock<TlsEngine> = OnceLock::new();

impl TlsEngine {
    /// The engine of this test binary, started on first use.
    pub fn shared() -> &'static TlsEngine {
        SHARED.get_or_init(TlsEngine::start)
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn tcp(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `unix://…/docker.sock` (plain, for the test's own docker CLI calls and contexts).
    pub fn unix(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// A `DOCKER_CERT_PATH` with the right CA and client pair.
    pub fn good_certs(&self) -> PathBuf {
        self.dir.join("certs/good")
    }

    /// The right CA, a client pair signed by another CA.
    pub fn wrong_client_certs(&self) -> PathBuf {
        self.dir.join("certs/wrong-client")
    }

    /// The right CA and no client pair.
    pub fn no_client_certs(&self) -> PathBuf {
        self.dir.join("certs/no-client")
    }

    /// The right client pair, but a CA that did not sign the engine's certificate.
    pub fn wrong_ca_certs(&self) -> PathBuf {
        self.dir.join("certs/wrong-ca")
    }

    /// Runs the docker CLI against this engine's unix socket.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.unix())
            .output()
            .expect("docker CLI")
    }

    fn start() -> TlsEngine {
        // Short: containerd's socket lives under the exec root (a socket path has 108 bytes).
        let dir = tempfile::Builder::new()
            .prefix("pl-tls-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        make_certs(&dir);
        let port = free_port();
        let shell = spawn_dockerd(&dir, port);
        let engine = TlsEngine {
            dir,
            port,
            _shell: Mutex::new(shell),
        };
        engine.wait_up();
        engine.copy_base_image();
        engine
    }

    fn wait_up(&self) {
        let start = Instant::now();
        loop {
            let out = self.docker(&["version", "--format", "{{.Server.Version}}"]);
            if out.status.success() {
                return;
            }
            let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the TLS test dockerd did not come up; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `docker save` from the suite's engine into this one.
    fn copy_base_image(&self) {
        let save = Command::new("docker")
            .args(["save", BASE_IMAGE])
            .output()
            .expect("docker save");
        assert!(
            save.status.success(),
            "docker save {BASE_IMAGE}: run through scripts/test.sh"
        );
        let mut load = Command::new("docker")
            .args(["load", "-q"])
            .env("DOCKER_HOST", self.unix())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        load.stdin.take().unwrap().write_all(&save.stdout).unwrap();
        assert!(
            load.wait().unwrap().success(),
            "docker load into the TLS engine"
        );
    }
}

fn spawn_dockerd(dir: &Path, port: u16) -> std::process::Child {
    let d = dir.display();
    let server = dir.join("certs/server");
    let s = server.display();
    let script = format!(
        "dockerd --host unix://{d}/docker.sock --host tcp://127.0.0.1:{port} \
         --tlsverify --tlscacert {s}/ca.pem --tlscert {s}/cert.pem --tlskey {s}/key.pem \
         --data-root {d}/data --exec-root {d}/exec --pidfile {d}/docker.pid \
         --bridge none --iptables=false --ip-masq=false >{d}/dockerd.log 2>&1 &\n\
         pid=$!\nread _ || true\nkill $pid 2>/dev/null\nwait $pid\nrm -rf {d}\n"
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dockerd under sh")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/test-env.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `name`.pem / `name`-key.pem in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}-key.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &format!("/CN=planner test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf `name`-cert.pem / `name`-key.pem signed by `ca`, with extensions `ext`.
fn make_leaf(dir: &Path, name: &str, ca: &str, ext: &str) {
    let (cert, key, csr, extfile) = (
        format!("{name}-cert.pem"),
        format!("{name}-key.pem"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

/// Makes the certificates and the `DOCKER_CERT_PATH` directories under `dir/certs`.
fn make_certs(dir: &Path) {
    let work = dir.join("certs/work");
    std::fs::create_dir_all(&work).unwrap();
    make_ca(&work, "ca");
    make_ca(&work, "other-ca");
    let server = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n";
    let client = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n";
    make_leaf(&work, "server", "ca", server);
    make_leaf(&work, "client", "ca", client);
    make_leaf(&work, "stranger", "other-ca", client);
    let put = |set: &str, files: &[(&str, &str)]| {
        let to = dir.join("certs").join(set);
        std::fs::create_dir_all(&to).unwrap();
        for (from, name) in files {
            std::fs::copy(work.join(from), to.join(name)).unwrap();
        }
    };
    put(
        "server",
        &[
            ("ca.pem", "ca.pem"),
            ("server-cert.pem", "cert.pem"),
            ("server-key.pem", "key.pem"),
        ],
    );
    put(
        "good",
        &[
            ("ca.pem", "ca.pem"),
            ("client-cert.pem", "cert.pem"),
            ("client-key.pem", "key.pem"),
        ],
    );
    put(
        "wrong-client",
        &[
            ("ca.pem", "ca.pem"),
            ("stranger-cert.pem", "cert.pem"),
            ("stranger-key.pem", "key.pem"),
        ],
    );
    put("no-client", &[("ca.pem", "ca.pem")]);
    put(
        "wrong-ca",
        &[
            ("other-ca.pem", "ca.pem"),
            ("client-cert.pem", "cert.pem"),
            ("client-key.pem", "key.pem"),
        ],
    );
}

/// A plain-HTTP tcp engine: 127.0.0.1:<port> relayed to `unix_socket`, keeping the first
/// bytes of each connection (to prove no plain-text request ever came).
pub struct PlainRelay {
    pub port: u16,
    pub firsts: std::sync::Arc<Mutex<Vec<Vec<u8>>>>,
}

impl PlainRelay {
    /// Starts the relay; it lives as long as the test binary.
    pub fn start(unix_socket: &Path) -> PlainRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let firsts = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (log, socket) = (firsts.clone(), unix_socket.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (log, socket) = (log.clone(), socket.clone());
                std::thread::spawn(move || relay(client, &socket, &log));
            }
        });
        PlainRelay { port, firsts }
    }

    pub fn tcp(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Whether any connection began with an HTTP request in plain text.
    pub fn saw_plain_http(&self) -> bool {
        let firsts = self.firsts.lock().unwrap();
        firsts.iter().any(|f| {
            ["GET ", "HEAD ", "POST ", "PUT ", "DELETE "]
                .iter()
                .any(|m| f.starts_with(m.as_bytes()))
        })
    }
}

fn relay(client: std::net::TcpStream, socket: &Path, log: &Mutex<Vec<Vec<u8>>>) {
    use std::io::Read;
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut first = [0u8; 16];
    let Ok(n) = (&client).read(&mut first) else {
        return;
    };
    log.lock().unwrap().push(first[..n].to_vec());
    let Ok(mut backend) = std::os::unix::net::UnixStream::connect(socket) else {
        return;
    };
    if backend.write_all(&first[..n]).is_err() {
        return;
    }
    let (Ok(mut back_read), Ok(mut client_write)) = (backend.try_clone(), client.try_clone())
    else {
        return;
    };
    let up = std::thread::spawn(move || {
        let mut client = client;
        let _ = std::io::copy(&mut client, &mut backend);
        let _ = backend.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut back_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}
