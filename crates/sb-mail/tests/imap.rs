//! IMAP ingress against a real Dovecot (2.3, Debian package `dovecot-imapd`): every test
//! starts its own instance on a free loopback port with a throwaway configuration and
//! Maildir, delivers mail by writing files into `Maildir/new` (as an MDA would), and checks
//! what reached the store (SQLite in a temporary directory).
//!
//! Without Dovecot the tests fail when `CI` is set and print a notice otherwise.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sb_core::SystemClock;
use sb_inbox::{Channels, Intake};
use sb_mail::imap::{self, ImapError};
use sb_sql::sqlite::{SqliteExecutor, SqliteOptions};
use sb_store::channel_accounts::{self, ChannelAccount};
use sb_store::{Db, Stmt, Store, mailbox_sync, workspaces};
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Dovecot

const PASSWORD: &str = "correct horse";

/// Who the Dovecot processes and the mailbox files belong to.
struct Identity {
    user: String,
    group: String,
    uid: u32,
    gid: u32,
    /// Running as root: files the test writes are handed to `uid`.
    chown: bool,
}

fn id(args: &[&str]) -> String {
    let out = Command::new("id").args(args).output().expect("run `id`");
    assert!(out.status.success(), "`id {}` failed", args.join(" "));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn identity() -> Identity {
    let root = id(&["-u"]) == "0";
    // Dovecot refuses to run its login processes, and mail processes, as root: as root the
    // instance runs as `nobody`, otherwise as whoever runs the tests.
    let of = |flag: &str| {
        if root { id(&[flag, "nobody"]) } else { id(&[flag]) }
    };
    Identity {
        user: of("-un"),
        group: of("-gn"),
        uid: of("-u").parse().expect("uid"),
        gid: of("-g").parse().expect("gid"),
        chown: root,
    }
}

/// `SWITCHBOARD_TEST_DOVECOT` when set, else where the packages put it.
fn dovecot_binary() -> Option<PathBuf> {
    let candidates = match std::env::var_os("SWITCHBOARD_TEST_DOVECOT") {
        Some(path) => vec![PathBuf::from(path)],
        None => vec!["/usr/sbin/dovecot".into(), "/usr/local/sbin/dovecot".into()],
    };
    candidates.into_iter().find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("address")
        .port()
}

/// A certificate (for `127.0.0.1`) and its key, both PEM.
struct Tls {
    cert_pem: String,
    key_pem: String,
}

fn self_signed() -> Tls {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    Tls {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    }
}

/// A running Dovecot, stopped on drop.
struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    /// Plain IMAP (STARTTLS too when started with TLS).
    port: u16,
    /// Implicit TLS, when started with TLS.
    tls_port: Option<u16>,
    user: String,
    identity: Identity,
}

static DELIVERED: AtomicU64 = AtomicU64::new(0);

impl Dovecot {
    /// `None` (after a notice) when Dovecot is not installed and `CI` is not set.
    fn start() -> Option<Dovecot> {
        Self::start_with(None)
    }

    fn start_with(tls: Option<&Tls>) -> Option<Dovecot> {
        let Some(binary) = dovecot_binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "Dovecot is not installed (no /usr/sbin/dovecot): install the `dovecot-imapd` package; CI must run the IMAP tests"
            );
            eprintln!("notice: Dovecot is not installed (apt-get install dovecot-imapd); skipping this IMAP test");
            return None;
        };
        let version = Command::new(&binary)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        assert!(
            version.starts_with("2.3."),
            "these tests write a Dovecot 2.3 configuration; {} is version `{version}`",
            binary.display()
        );

        let identity = identity();
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        let port = free_port();
        let tls_port = tls.map(|_| free_port());
        // Unique among the instances running at once: names the session's process.
        let user = format!("agent{port}");
        for sub in ["Maildir/cur", "Maildir/new", "Maildir/tmp"] {
            std::fs::create_dir_all(root.join(sub)).expect("create the Maildir");
        }
        std::fs::write(
            root.join("users"),
            format!(
                "{user}:{{PLAIN}}{PASSWORD}:{}:{}::{}::\n",
                identity.uid,
                identity.gid,
                root.display()
            ),
        )
        .expect("write the users file");
        let ssl = match tls {
            None => "ssl = no\n".to_owned(),
            Some(tls) => {
                std::fs::write(root.join("cert.pem"), &tls.cert_pem).expect("write the certificate");
                std::fs::write(root.join("key.pem"), &tls.key_pem).expect("write the key");
                format!(
                    "ssl = yes\nssl_cert = <{dir}/cert.pem\nssl_key = <{dir}/key.pem\n",
                    dir = root.display()
                )
            }
        };
        let config = format!(
            r#"# Throwaway instance for sb-mail's IMAP tests.
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
listen = 127.0.0.1
protocols = imap
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user_name}
default_login_user = {user_name}
default_internal_group = {group}
first_valid_uid = 1
mail_location = maildir:{dir}/Maildir
# Shows the running command (IDLE) in the session process's title.
verbose_proctitle = yes
passdb {{
  driver = passwd-file
  args = {dir}/users
}}
userdb {{
  driver = passwd-file
  args = {dir}/users
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
"#,
            dir = root.display(),
            user_name = identity.user,
            group = identity.group,
            tls_port = tls_port.unwrap_or(0),
        );
        let config_path = root.join("dovecot.conf");
        std::fs::write(&config_path, config).expect("write the configuration");
        if identity.chown {
            chown_tree(root, identity.uid, identity.gid);
        }
        // What Dovecot says before its log is open (a refused configuration) goes here.
        let output = std::fs::File::create(root.join("output.log")).expect("create output.log");
        let child = Command::new(&binary)
            .arg("-F")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("output.log"))
            .stderr(output)
            .spawn()
            .expect("start Dovecot");
        let mut dovecot = Dovecot {
            dir,
            child,
            port,
            tls_port,
            user,
            identity,
        };
        dovecot.wait_until_listening();
        Some(dovecot)
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Dovecot exited ({status}) at start:\n{}", self.log());
            }
            if ports
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Dovecot did not listen on {ports:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("output.log"), read("dovecot.log"))
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// Delivers `raw` the Maildir way: written in `tmp/`, then moved into `new/`.
    fn deliver(&self, raw: &str) {
        let n = DELIVERED.fetch_add(1, Ordering::SeqCst);
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs();
        let name = format!("{secs}.M{n}P{}.switchboard-test", std::process::id());
        let tmp = self.maildir().join("tmp").join(&name);
        let mut file = std::fs::File::create(&tmp).expect("create the message");
        file.write_all(raw.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes())
            .expect("write the message");
        file.sync_all().expect("sync the message");
        if self.identity.chown {
            std::os::unix::fs::chown(&tmp, Some(self.identity.uid), Some(self.identity.gid)).expect("chown");
        }
        std::fs::rename(&tmp, self.maildir().join("new").join(&name)).expect("deliver the message");
    }

    /// Makes Dovecot number the mailbox afresh (a new UIDVALIDITY), as after a server
    /// migration or a restored backup: its UID list and indexes are removed.
    fn forget_uids(&self) {
        for entry in std::fs::read_dir(self.maildir()).expect("read the Maildir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name == "dovecot-uidlist" || name.starts_with("dovecot.index") {
                std::fs::remove_file(&path).expect("remove an index file");
            }
        }
    }

    /// The flags of every message file, as Maildir names keep them (`…:2,<flags>`).
    fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for sub in ["new", "cur"] {
            for entry in std::fs::read_dir(self.maildir().join(sub)).expect("read the Maildir") {
                let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
                flags.push(name.split_once(":2,").map(|(_, f)| f.to_owned()).unwrap_or_default());
            }
        }
        flags
    }

    /// Whether this instance's session process is in IDLE (its title, with
    /// `verbose_proctitle`, is `dovecot/imap [<user> <ip> IDLE]`).
    fn session_idles(&self) -> bool {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return false;
        };
        let prefix = format!("dovecot/imap [{} ", self.user);
        entries.flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                let title = String::from_utf8_lossy(&cmdline);
                title.starts_with(&prefix) && title.contains(" IDLE]")
            })
        })
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children; SIGKILL if it does not go.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read a directory") {
            chown_tree(&entry.expect("entry").path(), uid, gid);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store

struct Inbox {
    _dir: tempfile::TempDir,
    store: Store,
    channels: Channels,
    intake: Intake,
    workspace_id: String,
}

impl Inbox {
    async fn new() -> Inbox {
        let dir = tempfile::tempdir().expect("temporary directory");
        let executor = SqliteExecutor::open(&SqliteOptions::new(dir.path().join("switchboard.db"))).expect("SQLite");
        let store = Store::new(Db::new(Arc::new(executor)), Arc::new(SystemClock));
        store.migrate().await.expect("migrate");
        let now = store.now();
        let workspace = store
            .db
            .write(move |c| workspaces::create(c, "Acme", now))
            .await
            .expect("workspace");
        Inbox {
            _dir: dir,
            store,
            channels: Channels::new(sb_channels::registry()),
            intake: Intake::default(),
            workspace_id: workspace.id,
        }
    }

    /// An e-mail account reading `dovecot`'s mailbox with `password`; `extra` settings win.
    async fn account(&self, dovecot: &Dovecot, password: &str, extra: serde_json::Value) -> (ChannelAccount, String) {
        let mut settings = json!({
            "address": "support@acme.example",
            "imap_host": "127.0.0.1",
            "imap_port": dovecot.port,
            "imap_security": "none",
            "imap_username": dovecot.user,
        });
        for (key, value) in extra.as_object().expect("an object") {
            settings[key] = value.clone();
        }
        let secrets = json!({ "imap_password": password }).to_string();
        let (ws, settings, stored_secrets, now) = (
            self.workspace_id.clone(),
            settings.to_string(),
            secrets.clone(),
            self.store.now(),
        );
        let account = self
            .store
            .db
            .write(move |c| channel_accounts::create(c, &ws, "email", "Support", &settings, &stored_secrets, now))
            .await
            .expect("account");
        (account, secrets)
    }

    async fn sync(&self, (account, secrets): &(ChannelAccount, String)) -> Result<usize, ImapError> {
        imap::sync_once(&self.store, &self.channels, &self.intake, account, secrets).await
    }

    /// The de-duplication keys of the account's stored requests (`msgid:<Message-ID>`).
    async fn stored(&self, account: &ChannelAccount) -> Vec<String> {
        let id = account.id.clone();
        let rows = self
            .store
            .db
            .read(move |c| {
                c.query(
                    &Stmt::new(
                        "SELECT dedupe_key FROM inbound_requests WHERE channel_account_id = :account ORDER BY dedupe_key",
                    )
                    .bind("account", &id),
                )
            })
            .await
            .expect("query");
        rows.iter().map(|r| r.get("dedupe_key").expect("dedupe_key")).collect()
    }

    async fn position(&self, account: &ChannelAccount) -> Option<(i64, i64)> {
        let id = account.id.clone();
        self.store
            .db
            .read(move |c| mailbox_sync::get(c, &id, "INBOX"))
            .await
            .expect("mailbox_sync")
    }

    /// Waits (at most 10 s) until the account has `n` stored requests.
    async fn wait_for_stored(&self, account: &ChannelAccount, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stored = self.stored(account).await;
            if stored.len() >= n || Instant::now() > deadline {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn mail(id: &str, subject: &str) -> String {
    format!(
        "From: Ana Lima <ana@customer.example>\n\
         To: support@acme.example\n\
         Subject: {subject}\n\
         Message-ID: <{id}@customer.example>\n\
         Date: {date}\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         \n\
         Hello, this is about {subject}.\n",
        date = "Tue, 24 Nov 2026 18:40:00 +0000",
    )
}

fn key(id: &str) -> String {
    format!("msgid:{id}@customer.example")
}

// ---------------------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn a_message_already_in_the_mailbox_is_taken_in_once_and_stays_unread() {
    let Some(dovecot) = Dovecot::start() else { return };
    let inbox = Inbox::new().await;
    let account = inbox.account(&dovecot, PASSWORD, json!({})).await;
    dovecot.deliver(&mail("first", "order 1042"));

    assert_eq!(inbox.sync(&account).await.expect("first pass"), 1);
    assert_eq!(inbox.stored(&account.0).await, vec![key("first")]);
    let (validity, last) = inbox.position(&account.0).await.expect("a saved position");
    assert!(validity > 0);
    assert_eq!(last, 1);

    // Read again: nothing new is stored, the position stays.
    assert_eq!(inbox.sync(&account).await.expect("second pass"), 0);
    assert_eq!(inbox.stored(&account.0).await, vec![key("first")]);
    assert_eq!(inbox.position(&account.0).await, Some((validity, 1)));

    // The owner's view is unchanged: no message was marked \Seen.
    let flags = dovecot.flags();
    assert_eq!(flags.len(), 1);
    assert!(flags.iter().all(|f| !f.contains('S')), "flags {flags:?}");
}

#[tokio::test]
async fn a_message_that_arrives_during_idle_is_taken_in_once() {
    let Some(dovecot) = Dovecot::start() else { return };
    let inbox = Inbox::new().await;
    // Polling would take an hour: only IDLE can bring the second message in time.
    let account = inbox
        .account(&dovecot, PASSWORD, json!({ "imap_poll_secs": 3600 }))
        .await;
    dovecot.deliver(&mail("before", "order 1"));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let supervisor = imap::spawn(
        inbox.store.clone(),
        inbox.channels.clone(),
        inbox.intake.clone(),
        stopped,
    );
    assert_eq!(inbox.wait_for_stored(&account.0, 1).await, vec![key("before")]);

    let deadline = Instant::now() + Duration::from_secs(10);
    while !dovecot.session_idles() {
        assert!(
            Instant::now() < deadline,
            "the reader did not enter IDLE:\n{}",
            dovecot.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dovecot.deliver(&mail("during", "order 2"));
    let stored = inbox.wait_for_stored(&account.0, 2).await;
    assert_eq!(stored, vec![key("before"), key("during")], "{}", dovecot.log());
    // Once: a while later there is still one request for it, and the reader idles again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(inbox.stored(&account.0).await.len(), 2);
    assert_eq!(inbox.position(&account.0).await.map(|(_, last)| last), Some(2));

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), supervisor)
        .await
        .expect("the supervisor stops")
        .expect("the supervisor did not panic");
}

#[tokio::test]
async fn a_uidvalidity_change_reads_again_without_duplicates() {
    let Some(dovecot) = Dovecot::start() else { return };
    let inbox = Inbox::new().await;
    let account = inbox.account(&dovecot, PASSWORD, json!({})).await;
    dovecot.deliver(&mail("one", "order 1"));
    dovecot.deliver(&mail("two", "order 2"));
    assert_eq!(inbox.sync(&account).await.expect("first pass"), 2);
    let (old_validity, last) = inbox.position(&account.0).await.expect("position");
    assert_eq!(last, 2);

    // UIDVALIDITY is in seconds: make sure the new one cannot equal the old.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    dovecot.forget_uids();
    dovecot.deliver(&mail("three", "order 3"));

    assert_eq!(inbox.sync(&account).await.expect("pass after the change"), 1);
    assert_eq!(
        inbox.stored(&account.0).await,
        vec![key("one"), key("three"), key("two")]
    );
    let (new_validity, last) = inbox.position(&account.0).await.expect("position");
    assert_ne!(new_validity, old_validity, "Dovecot kept the UIDVALIDITY");
    // All three were read under the new numbering (two of them as duplicates).
    assert_eq!(last, 3);
    assert_eq!(inbox.sync(&account).await.expect("another pass"), 0);
}

#[tokio::test]
async fn a_malformed_message_is_skipped_and_does_not_block_the_next() {
    let Some(dovecot) = Dovecot::start() else { return };
    let inbox = Inbox::new().await;
    let account = inbox.account(&dovecot, PASSWORD, json!({})).await;
    dovecot.deliver(&mail("good-1", "order 1"));
    // No `From`: our parser refuses it.
    dovecot.deliver("Subject: who sent this?\nMessage-ID: <bad@nowhere.example>\n\nNobody.\n");
    dovecot.deliver(&mail("good-2", "order 2"));

    assert_eq!(inbox.sync(&account).await.expect("pass"), 2);
    assert_eq!(inbox.stored(&account.0).await, vec![key("good-1"), key("good-2")]);
    assert_eq!(inbox.position(&account.0).await.map(|(_, last)| last), Some(3));
    // Not tried again.
    assert_eq!(inbox.sync(&account).await.expect("second pass"), 0);
    assert_eq!(inbox.stored(&account.0).await.len(), 2);
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_and_stores_nothing() {
    let Some(dovecot) = Dovecot::start() else { return };
    let inbox = Inbox::new().await;
    let account = inbox.account(&dovecot, "not the password", json!({})).await;
    dovecot.deliver(&mail("unread", "order 1"));

    let error = inbox.sync(&account).await.expect_err("the login fails");
    assert!(matches!(error, ImapError::LoginRefused(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("refused the login"), "{message}");
    assert!(!message.contains("not the password"), "{message}");
    assert!(inbox.stored(&account.0).await.is_empty());
    assert_eq!(inbox.position(&account.0).await, None);
}

#[tokio::test]
async fn tls_and_starttls_verify_the_server_against_the_accounts_ca() {
    let tls = self_signed();
    let Some(dovecot) = Dovecot::start_with(Some(&tls)) else {
        return;
    };
    let inbox = Inbox::new().await;
    dovecot.deliver(&mail("secure", "order 1"));

    let implicit = inbox
        .account(
            &dovecot,
            PASSWORD,
            json!({ "imap_security": "tls", "imap_port": dovecot.tls_port, "imap_ca_pem": tls.cert_pem }),
        )
        .await;
    assert_eq!(inbox.sync(&implicit).await.expect("implicit TLS"), 1);

    let starttls = inbox
        .account(
            &dovecot,
            PASSWORD,
            json!({ "imap_security": "starttls", "imap_ca_pem": tls.cert_pem }),
        )
        .await;
    assert_eq!(inbox.sync(&starttls).await.expect("STARTTLS"), 1);
    assert_eq!(inbox.stored(&starttls.0).await, vec![key("secure")]);

    // Without the CA the self-signed certificate is refused, before any password is sent.
    let untrusted = inbox
        .account(
            &dovecot,
            PASSWORD,
            json!({ "imap_security": "tls", "imap_port": dovecot.tls_port }),
        )
        .await;
    let error = inbox.sync(&untrusted).await.expect_err("an untrusted certificate");
    assert!(matches!(error, ImapError::Tls(_)), "{error:?}");
    assert!(inbox.stored(&untrusted.0).await.is_empty());
}
