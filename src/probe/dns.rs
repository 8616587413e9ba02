//! A DNS query over UDP to one resolver (the configured one, or the first `nameserver` of
//! `/etc/resolv.conf`), so that a probe asks exactly the resolver it names.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

use crate::domain::Finding;

fn system_resolver() -> Result<SocketAddr, String> {
    let conf = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("no resolver given and /etc/resolv.conf unreadable: {e}"))?;
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or_else(|| "no resolver given and none in /etc/resolv.conf".to_owned())
}

/// The answers for `name` of type `record` (A, AAAA, CNAME, MX, TXT, NS), as text.
pub async fn resolve(
    name: &str,
    record: &str,
    resolver: &str,
    timeout: Duration,
) -> Result<Vec<String>, Finding> {
    let failed = |cause: String| Finding::Failed { cause };
    let server: SocketAddr = if resolver.is_empty() {
        system_resolver().map_err(failed)?
    } else {
        resolver
            .parse()
            .map_err(|_| failed(format!("`{resolver}` is not ip:port")))?
    };
    let record_type: RecordType = record
        .parse()
        .map_err(|_| failed(format!("`{record}` is not a record type")))?;
    let fqdn =
        Name::from_ascii(name).map_err(|e| failed(format!("`{name}` is not a DNS name: {e}")))?;
    let id: u16 = rand::random();
    let mut query = Message::new();
    query
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(fqdn, record_type));
    let bytes = query.to_bytes().map_err(|e| failed(e.to_string()))?;
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let unreachable = |e: std::io::Error| Finding::ResolverUnreachable {
        server: server.to_string(),
        cause: e.to_string(),
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| failed(format!("cannot open a UDP socket: {e}")))?;
    socket.connect(server).await.map_err(unreachable)?;
    let exchange = async {
        socket.send(&bytes).await.map_err(unreachable)?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await.map_err(unreachable)?;
            let Ok(answer) = Message::from_bytes(&buf[..n]) else {
                continue;
            };
            // Anything else on the socket is not our answer.
            if answer.id() == id {
                return Ok::<Message, Finding>(answer);
            }
        }
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Finding::ResolverSilent {
            server: server.to_string(),
        })??;
    match answer.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return Err(Finding::NoSuchName {
                name: name.to_owned(),
            });
        }
        code => {
            return Err(Finding::ResolverAnswered {
                server: server.to_string(),
                code: code.to_string(),
            });
        }
    }
    Ok(answer
        .answers()
        .iter()
        .filter(|r| r.record_type() == record_type)
        .map(|r| match r.data() {
            RData::A(a) => a.to_string(),
            RData::AAAA(a) => a.to_string(),
            RData::CNAME(c) => c.to_string(),
            RData::NS(n) => n.to_string(),
            RData::MX(mx) => mx.exchange().to_string(),
            RData::TXT(txt) => txt.to_string(),
            other => other.to_string(),
        })
        .collect())
}
