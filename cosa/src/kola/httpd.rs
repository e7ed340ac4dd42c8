//! A read-only HTTP server of one directory on the host's loopback, for guests
//! that reach it through a guestfwd (an upgrade's ostree repo). Nothing outside
//! the directory is served; it stops when dropped.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};

pub struct Httpd {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub port: u16,
}

impl Httpd {
    /// Serve `root` on 127.0.0.1 at a free port.
    pub fn serve(root: &Path) -> Result<Httpd> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| anyhow!("starting an HTTP server on 127.0.0.1: {e}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .context("the HTTP server has no IP address")?
            .port();
        let server = Arc::new(server);
        let root = root.to_path_buf();
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name(format!("httpd-{port}"))
            .spawn(move || {
                for req in s.incoming_requests() {
                    let resp = respond(&root, req.method(), req.url());
                    // A guest that hangs up early is no error of ours.
                    let _ = req.respond(resp);
                }
            })
            .context("starting the HTTP server's thread")?;
        Ok(Httpd {
            server,
            thread: Some(thread),
            port,
        })
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The file under `root` that `url` names, if it names one inside it.
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let mut out = root.to_path_buf();
    for c in Path::new(path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            // `..`, or a second root: never outside `root`.
            _ => return None,
        }
    }
    Some(out)
}

type Response = tiny_http::Response<Box<dyn std::io::Read + Send>>;

fn respond(root: &Path, method: &tiny_http::Method, url: &str) -> Response {
    let status = |code: u16| -> Response {
        tiny_http::Response::new(
            code.into(),
            Vec::new(),
            Box::new(std::io::empty()),
            Some(0),
            None,
        )
    };
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return status(405);
    }
    let Some(path) = resolve(root, url) else {
        return status(404);
    };
    // Regular files only; a symlink leading out of `root` is not followed.
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        _ => return status(404),
    }
    match std::fs::File::open(&path) {
        Ok(f) => {
            let len = f.metadata().map(|m| m.len() as usize).ok();
            let body: Box<dyn std::io::Read + Send> = if *method == tiny_http::Method::Head {
                Box::new(std::io::empty())
            } else {
                Box::new(f)
            };
            tiny_http::Response::new(200.into(), Vec::new(), body, len, None)
        }
        Err(_) => status(404),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(port: u16, path: &str) -> String {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(c, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn serves_files_inside_its_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("www");
        std::fs::create_dir_all(root.join("repo")).unwrap();
        std::fs::write(root.join("repo/config"), "[core]\n").unwrap();
        std::fs::write(t.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), root.join("link")).unwrap();
        let h = Httpd::serve(&root).unwrap();
        let ok = get(h.port, "/repo/config");
        assert!(
            ok.starts_with("HTTP/1.0 200") && ok.ends_with("[core]\n"),
            "{ok}"
        );
        for bad in [
            "/../secret",
            "/repo/../../secret",
            "/link",
            "/missing",
            "/repo",
        ] {
            let r = get(h.port, bad);
            assert!(r.starts_with("HTTP/1.0 404"), "{bad}: {r}");
        }
        assert_eq!(resolve(&root, "/a/./b?x=1"), Some(root.join("a/b")));
        drop(h);
    }
}
