//! The real binary: exit code 2 with one clear message on bad configuration; start, serve,
//! print the demo login, drain on SIGTERM; refuse a changed migration.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .env_remove("SWITCHBOARD_NATS_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_exits_2_with_a_message_that_says_what_to_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "lisen = \"127.0.0.1:1\"\n").expect("write");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").expect("write");
    // (arguments, environment, what the message must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--data-dir", data, "--listen", "not-an-address"],
            vec![],
            "SWITCHBOARD_LISTEN",
        ),
        (
            vec!["--data-dir", data],
            vec![("SWITCHBOARD_LISTEN", "300.1.1.1:80")],
            "SWITCHBOARD_LISTEN",
        ),
        (
            vec!["--data-dir", blocker.to_str().expect("path")],
            vec![],
            "SWITCHBOARD_DATA_DIR",
        ),
        (
            vec!["--data-dir", data, "--database-url", "mysql://root@localhost/x"],
            vec![],
            "SWITCHBOARD_DATABASE_URL",
        ),
        (
            vec![
                "--data-dir",
                data,
                "--database-url",
                "postgres://nobody:pw@127.0.0.1:1/x",
            ],
            vec![],
            "SWITCHBOARD_DATABASE_URL",
        ),
        (
            vec!["--data-dir", data, "--config", toml.to_str().expect("path")],
            vec![],
            "lisen",
        ),
        (
            vec!["--data-dir", data, "--nats-url", "nats://127.0.0.1:1"],
            vec![],
            "SWITCHBOARD_NATS_URL",
        ),
    ];
    for (args, envs, must_mention) in cases {
        let (code, stderr) = run(&args, &envs);
        assert_eq!(code, 2, "{args:?} → {stderr}");
        let message: Vec<&str> = stderr.lines().filter(|l| l.starts_with("switchboard: ")).collect();
        assert_eq!(message.len(), 1, "one message for {args:?}: {stderr}");
        assert!(message[0].contains(must_mention), "{args:?}: {}", message[0]);
        assert!(!message[0].contains(":pw@"), "no password in messages");
    }
}

#[test]
fn the_binary_serves_prints_the_demo_login_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir", data.to_str().expect("path")])
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .env_remove("SWITCHBOARD_NATS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !printed.iter().any(|l: &String| l.contains("API token")) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            printed.push(line);
        }
    }
    let addr = printed
        .iter()
        .find_map(|l| l.strip_prefix("Switchboard is listening on http://"))
        .expect("prints where it listens")
        .to_owned();
    assert!(
        printed.iter().any(|l| l.contains("admin@demo.switchboard.local")),
        "prints the demo login: {printed:?}"
    );
    let health = http_get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-credentials.json")).expect("credentials file"))
            .expect("json");
    assert_eq!(creds["base_url"].as_str(), Some(format!("http://{addr}").as_str()));
    let users = creds["users"].as_array().expect("users");
    let roles: Vec<&str> = users.iter().filter_map(|u| u["role"].as_str()).collect();
    assert_eq!(roles, ["admin", "agent", "agent", "marketer", "store_staff"]);
    assert!(
        users
            .iter()
            .all(|u| u["email"].is_string() && u["password"].as_str().is_some_and(|p| p.len() >= 12))
    );
    assert!(creds["api_token"].as_str().is_some_and(|t| t.starts_with("sbt_")));
    let api = &creds["channels"]["api"];
    assert!(
        api["inbound_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("http://{addr}/hooks/api/"))),
        "{creds}"
    );
    assert!(api["secret"].as_str().is_some_and(|s| s.len() == 64));

    // SIGTERM: drains and exits 0.
    let pid = child.id() as libc::pid_t;
    // SAFETY-free: libc::kill is a plain syscall wrapper.
    assert_eq!(send_signal(pid, libc::SIGTERM), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "drained within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");

    // A second start finds the demo workspace and does not create another.
    let (code, _) = run(&["migrate", "--data-dir", data.to_str().expect("path")], &[]);
    assert_eq!(code, 0);
}

fn send_signal(pid: libc::pid_t, signal: libc::c_int) -> libc::c_int {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .map(|s| if s.success() { 0 } else { 1 })
        .unwrap_or(1)
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[test]
fn a_changed_migration_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("path").to_owned();
    let (code, stderr) = run(&["migrate", "--data-dir", &data], &[]);
    assert_eq!(code, 0, "{stderr}");
    let db_path = dir.path().join("switchboard.sqlite");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let exec = sb_sql::sqlite::SqliteExecutor::open(&sb_sql::sqlite::SqliteOptions::new(&db_path)).expect("open");
        let db = sb_sql::Db::new(std::sync::Arc::new(exec));
        db.execute(sb_sql::Stmt::new(
            "UPDATE sb_migrations SET checksum = 'edited' WHERE version = 1",
        ))
        .await
        .expect("tamper");
        db.close().await;
    });
    let (code, stderr) = run(&["--listen", "127.0.0.1:0", "--data-dir", &data], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("changed after it was applied"), "{stderr}");
}
