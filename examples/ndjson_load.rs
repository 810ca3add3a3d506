//! Load client for the serve-api benchmark (`scripts/bench-serve-api.sh`): N concurrent clients
//! each read one NDJSON stream to the end over real HTTP, counting lines; prints records/s.
//!
//! usage: ndjson_load ADDR PATH_AND_QUERY [CLIENTS]

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

async fn read_stream(addr: String, path: String) -> anyhow::Result<(u64, u64)> {
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path.as_str())
        .header("host", addr.as_str())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(req).await?;
    anyhow::ensure!(response.status() == 200, "status {}", response.status());
    let mut body = response.into_body();
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
            bytes += data.len() as u64;
        }
    }
    Ok((lines, bytes))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: ndjson_load ADDR PATH_AND_QUERY [CLIENTS]"
    );
    let clients: usize = args.get(3).map(|c| c.parse()).transpose()?.unwrap_or(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(read_stream(args[1].clone(), args[2].clone())))
        .collect();
    let (mut lines, mut bytes) = (0, 0);
    for task in tasks {
        let (l, b) = task.await??;
        lines += l;
        bytes += b;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "clients={clients} records={lines} bytes={bytes} seconds={secs:.3} records_per_sec={:.0} MB_per_sec={:.1}",
        lines as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
