//! The typed peer API answered in process: what this node's routes do for a peer's
//! `Ask`, without the HTTP around it. An in-process transport (the simulation's) hands
//! asks here; the routes and this function share every check and action (`node`,
//! `mesh`), and refusals carry the statuses the routes would send (`ApiError`).

use std::time::Duration;

use bytes::Bytes;
use hyper::{HeaderMap, StatusCode};

use super::error::ApiError;
use crate::client::Reply;
use crate::id::BlockId;
use crate::mesh::link::{Answer, Ask};
use crate::node::{Node, NodeError, UploadHasher};
use crate::store::PutOutcome;

/// `node`'s answer to `ask` from the verified peer `from`.
pub async fn answer_peer(node: &Node, from: BlockId, ask: Ask) -> Answer {
    match answer(node, from, ask).await {
        Ok(answer) => answer,
        Err(NodeError::NotFound { .. }) => Answer::Missing,
        Err(e) => {
            let e = ApiError::from(e);
            Answer::Refused {
                status: e.status,
                reason: e.message,
            }
        }
    }
}

async fn answer(node: &Node, from: BlockId, ask: Ask) -> Result<Answer, NodeError> {
    let mesh = node.mesh();
    Ok(match ask {
        Ask::Get {
            id,
            hops,
            request,
            wait,
        } => {
            let origin = mesh.forwarded(from, hops, Some(request), true);
            let found = node.fetch(id, wait, origin).await?;
            Answer::Block {
                bytes: found.bytes,
                hops: found.hops,
            }
        }
        Ask::Has { id } => {
            let origin = mesh.forwarded(from, 0, None, false);
            node.block_size(id, Duration::ZERO, origin).await?;
            Answer::Held
        }
        Ask::Offer {
            id,
            block,
            heat,
            keep_until,
        } => stored(
            node.accept_push(id, upload(&block), heat, from, keep_until)
                .await?,
        ),
        Ask::OfferMany {
            blocks,
            heat,
            keep_until,
        } => {
            let sender = crate::node::BatchSender::Peer {
                from,
                hint: heat,
                keep_until,
            };
            Answer::Batch(
                node.put_batch(blocks, sender)
                    .await
                    .into_iter()
                    .map(|result| match result {
                        Ok(PutOutcome::Stored) => 201,
                        Ok(PutOutcome::AlreadyHeld) => 200,
                        Err(e) => ApiError::from(e).status.as_u16(),
                    })
                    .collect(),
            )
        }
        Ask::Introduce { block } => {
            stored(node.put_block(BlockId::of(&block), upload(&block)).await?)
        }
        Ask::Announce(announce) => Answer::Peers(
            mesh.accept_announce(from, &announce)
                .map_err(|e| NodeError::BadAnnounce(e.to_string()))?,
        ),
        Ask::Like { id, request } => {
            let origin = mesh.forwarded(from, 0, Some(request), true);
            let found = node.like(&id, origin).await;
            Answer::Like(
                found
                    .into_iter()
                    .map(|(id, n)| (id, u64::from(n)))
                    .collect(),
            )
        }
        Ask::Holds { ids, keep_until } => Answer::Holds(node.holds(from, &ids, keep_until).await?),
        Ask::Read { path } => {
            let body = match path.as_str() {
                "/node" => serde_json::to_vec(&node.info()).unwrap_or_default(),
                "/metrics" => node.render_metrics().into_bytes(),
                _ => {
                    return Ok(Answer::Refused {
                        status: StatusCode::NOT_FOUND,
                        reason: "no such resource".into(),
                    });
                }
            };
            Answer::Raw(Reply {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from(body),
            })
        }
    })
}

fn upload(block: &Bytes) -> crate::node::Upload {
    let mut hasher = UploadHasher::new(block.len());
    hasher.push(block);
    hasher.finish()
}

fn stored(outcome: PutOutcome) -> Answer {
    match outcome {
        PutOutcome::Stored => Answer::Stored,
        PutOutcome::AlreadyHeld => Answer::Held,
    }
}
