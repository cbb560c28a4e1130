//! Stand-ins for a misbehaving Redis: a private redis-server to flush, pause, kill and restart; a
//! listener that never answers; a proxy that can be cut. The shared Redis is never touched.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{eventually, free_port};

/// A redis-server of the test's own, on a free port, keeping nothing on disk.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        RedisServer::start_with(&[]).await
    }

    /// A server started with extra command-line settings (kept for restarts).
    pub async fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            port,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.launch().await;
        server
    }

    async fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.extra)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let url = self.url();
        let up = eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                match redis::Client::open(url.as_str()) {
                    Ok(c) => match c.get_multiplexed_async_connection().await {
                        Ok(mut conn) => redis::cmd("PING")
                            .query_async::<String>(&mut conn)
                            .await
                            .is_ok(),
                        Err(_) => false,
                    },
                    Err(_) => false,
                }
            }
        })
        .await;
        assert!(up, "private redis-server started");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the socket stays open, nothing answers.
    pub fn pause(&self) {
        unsafe {
            libc::kill(self.pid(), libc::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        unsafe {
            libc::kill(self.pid(), libc::SIGCONT);
        }
    }

    /// A new redis-server on the same port: empty, with a new run_id.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    pub async fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await.unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// A child process (a server a test started by hand) killed when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP listener that accepts connections and never answers: a black-holed Redis.
pub struct BlackHole {
    pub port: u16,
    _task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub async fn start() -> BlackHole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        BlackHole { port, _task: task }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// What a `CuttableProxy` does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    /// Existing connections go silent and new ones are accepted and never answered: a network
    /// that black-holes, or a server that hangs.
    Stall,
    /// Existing connections are closed and new ones are closed at once: a server that is down.
    Refuse,
}

/// A TCP proxy in front of a server (Redis or PostgreSQL) that a test can stall, cut and restore,
/// as if the network between one app instance and the server failed while the server stays up.
pub struct CuttableProxy {
    pub port: u16,
    mode: tokio::sync::watch::Sender<ProxyMode>,
}

impl CuttableProxy {
    pub async fn start(upstream_port: u16) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, watch) = tokio::sync::watch::channel(ProxyMode::Pass);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                match *watch.borrow() {
                    ProxyMode::Stall => {
                        held.push(client);
                        continue;
                    }
                    ProxyMode::Refuse => continue,
                    ProxyMode::Pass => {}
                }
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        mode = async {
                            loop {
                                let mode = *watch.borrow_and_update();
                                if mode != ProxyMode::Pass {
                                    break mode;
                                }
                                if watch.changed().await.is_err() {
                                    break ProxyMode::Refuse;
                                }
                            }
                        } => {
                            if mode == ProxyMode::Stall {
                                // Hold the client side open and silent: a black hole, not a reset.
                                let _keep = client;
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                });
            }
        });
        CuttableProxy { port, mode }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stalls (see `ProxyMode::Stall`).
    pub fn cut(&self) {
        let _ = self.mode.send(ProxyMode::Stall);
    }

    pub fn set(&self, mode: ProxyMode) {
        let _ = self.mode.send(mode);
    }

    pub fn restore(&self) {
        let _ = self.mode.send(ProxyMode::Pass);
    }
}

/// A TCP proxy that holds every byte from the server for `delay` before passing it on (in order):
/// a slow network. Requests go through at once.
pub struct DelayProxy {
    pub port: u16,
}

impl DelayProxy {
    pub async fn start(upstream_port: u16, delay: Duration) -> DelayProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let (tx, mut rx) =
                        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = server_read.read(&mut buf).await {
                            if n == 0
                                || tx
                                    .send((tokio::time::Instant::now(), buf[..n].to_vec()))
                                    .is_err()
                            {
                                break;
                            }
                        }
                    });
                    while let Some((at, bytes)) = rx.recv().await {
                        tokio::time::sleep_until(at + delay).await;
                        if client_write.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        DelayProxy { port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}
