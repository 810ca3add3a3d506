//! What the next batch reads: where each partition stands on the broker, how a checkpoint's
//! offsets resume against that (records removed by retention, a re-created topic), and how a
//! batch's record limit splits across partitions.

use std::collections::BTreeMap;

use rskafka::client::partition::OffsetAt;

use super::TopicJob;
use crate::backoff::RetryPolicy;
use crate::consume::ConsumeError;
use crate::consume::checkpoint::Plan;
use crate::settings::DataLossPolicy;

/// Splits at most `limit` records (0 = no limit) across partitions in proportion to what each
/// has waiting (`next..end`); remainders go to the largest fractions.
fn allocate(waiting: &BTreeMap<i32, (i64, i64)>, limit: u64) -> BTreeMap<i32, (i64, i64)> {
    let lag = |(next, end): (i64, i64)| (end - next).max(0) as u64;
    let total: u64 = waiting.values().map(|&r| lag(r)).sum();
    if limit == 0 || total <= limit {
        return waiting
            .iter()
            .filter(|(_, r)| lag(**r) > 0)
            .map(|(&p, &r)| (p, r))
            .collect();
    }
    let mut shares: Vec<(i32, u64, u128)> = waiting
        .iter()
        .map(|(&p, &r)| {
            let exact = limit as u128 * lag(r) as u128;
            (p, (exact / total as u128) as u64, exact % total as u128)
        })
        .collect();
    let mut left = limit - shares.iter().map(|s| s.1).sum::<u64>();
    let mut by_fraction: Vec<usize> = (0..shares.len()).collect();
    by_fraction.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for i in by_fraction {
        if left == 0 {
            break;
        }
        shares[i].1 += 1;
        left -= 1;
    }
    shares
        .into_iter()
        .filter(|&(_, take, _)| take > 0)
        .map(|(p, take, _)| {
            let (next, _) = waiting[&p];
            (p, (next, next + take as i64))
        })
        .collect()
}

/// The offset `at` of every partition of the job, each look-up retried.
pub(super) async fn offsets(
    job: &TopicJob,
    at: OffsetAt,
    policy: RetryPolicy,
) -> Result<BTreeMap<i32, i64>, ConsumeError> {
    let mut out = BTreeMap::new();
    for client in &job.partitions {
        let what = format!("reading offsets of {}/{}", job.topic, client.partition());
        let offset =
            crate::kafka::retry_call(policy, job.request_timeout, &what, || client.get_offset(at))
                .await
                .map_err(|source| ConsumeError::Broker {
                    topic: job.topic.clone(),
                    source: Box::new(source),
                })?;
        out.insert(client.partition(), offset);
    }
    Ok(out)
}

/// The partitions' end offsets, shown on the status page as they are read.
pub(super) async fn latest_offsets(
    job: &TopicJob,
    policy: RetryPolicy,
) -> Result<BTreeMap<i32, i64>, ConsumeError> {
    let latest = offsets(job, OffsetAt::Latest, policy).await?;
    job.status.observe_latest_all(&latest);
    Ok(latest)
}

/// One look-up of the end offsets for the status page, without retries: a failure only
/// leaves the page's numbers a little older.
pub(super) async fn refresh_latest(job: &TopicJob) {
    for client in &job.partitions {
        let latest =
            tokio::time::timeout(job.request_timeout, client.get_offset(OffsetAt::Latest)).await;
        if let Ok(Ok(end)) = latest {
            job.status.observe_latest(client.partition(), end);
        }
    }
}

/// The next batch's ranges from `next` (moved past records the broker no longer has, by
/// `consumer.on_data_loss`) up to `latest`, at most `consumer.max_offsets_per_trigger`
/// records; empty when nothing waits.
pub(super) async fn next_ranges(
    job: &TopicJob,
    next: &mut BTreeMap<i32, i64>,
    latest: &BTreeMap<i32, i64>,
    policy: RetryPolicy,
) -> Result<BTreeMap<i32, (i64, i64)>, ConsumeError> {
    let earliest = offsets(job, OffsetAt::Earliest, policy).await?;
    for (p, next_p) in next.iter_mut() {
        let range = BrokerRange {
            earliest: earliest[p],
            latest: latest[p],
        };
        *next_p = range.resume_at(&job.topic, *p, *next_p, job.settings.on_data_loss)?;
    }
    let waiting: BTreeMap<i32, (i64, i64)> = next
        .iter()
        .map(|(&p, &n)| (p, (n, latest[&p].max(n))))
        .collect();
    Ok(allocate(&waiting, job.settings.max_offsets_per_trigger))
}

/// Whether an unfinished batch's ranges can still be read as planned. Records gone from
/// below the earliest offset are handled while fetching; a range reaching past the end
/// (the topic was re-created) fails, or with `on_data_loss = "skip"` drops the plan.
pub(super) async fn still_readable(
    job: &TopicJob,
    plan: &Plan,
    policy: RetryPolicy,
) -> Result<bool, ConsumeError> {
    let earliest = offsets(job, OffsetAt::Earliest, policy).await?;
    let latest = offsets(job, OffsetAt::Latest, policy).await?;
    for (p, &(_, end)) in &plan.ranges {
        let range = BrokerRange {
            earliest: earliest[p],
            latest: latest[p],
        };
        if end > range.latest {
            range.past_end(&job.topic, *p, end, job.settings.on_data_loss)?;
            return Ok(false);
        }
    }
    Ok(true)
}

/// The offsets a partition holds now: `earliest..latest`.
#[derive(Debug, Clone, Copy)]
struct BrokerRange {
    earliest: i64,
    latest: i64,
}

impl BrokerRange {
    /// Where to go on from `next`, the checkpoint's next offset: `next` itself while the
    /// broker still has it (or it is the end), else by `policy`. Below the earliest, retention
    /// removed records; past the latest, the partition is not the one the checkpoint read.
    fn resume_at(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
        policy: DataLossPolicy,
    ) -> Result<i64, ConsumeError> {
        if next < self.earliest {
            handle_data_loss(topic, partition, next, self.earliest, policy)?;
            Ok(self.earliest)
        } else if next > self.latest {
            self.past_end(topic, partition, next, policy)?;
            Ok(self.earliest)
        } else {
            Ok(next)
        }
    }

    fn past_end(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
        policy: DataLossPolicy,
    ) -> Result<(), ConsumeError> {
        match policy {
            DataLossPolicy::Fail => Err(ConsumeError::PastEnd {
                topic: topic.to_string(),
                partition,
                next,
                earliest: self.earliest,
                latest: self.latest,
            }),
            DataLossPolicy::Skip => {
                tracing::error!(%topic, partition, checkpoint_next = next, earliest = self.earliest, latest = self.latest, "the checkpoint is past the partition's end: the topic was re-created or the broker lost data; continuing from the earliest offset (consumer.on_data_loss = \"skip\")");
                Ok(())
            }
        }
    }
}

/// Offsets `from..to` of a partition are gone (retention): an error, or with
/// `on_data_loss = "skip"` a warning.
pub(super) fn handle_data_loss(
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    policy: DataLossPolicy,
) -> Result<(), ConsumeError> {
    match policy {
        DataLossPolicy::Fail => Err(ConsumeError::DataLoss {
            topic: topic.to_string(),
            partition,
            from,
            to,
        }),
        DataLossPolicy::Skip => {
            tracing::warn!(%topic, partition, from, to, "offsets no longer exist (retention removed them); skipping to the earliest available (consumer.on_data_loss = \"skip\")");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(parts: &[(i32, i64, i64)]) -> BTreeMap<i32, (i64, i64)> {
        parts.iter().map(|&(p, n, e)| (p, (n, e))).collect()
    }

    #[test]
    fn takes_everything_under_the_limit() {
        let w = waiting(&[(0, 0, 10), (1, 5, 5), (2, 3, 8)]);
        assert_eq!(allocate(&w, 100), waiting(&[(0, 0, 10), (2, 3, 8)]));
        assert_eq!(allocate(&w, 0), waiting(&[(0, 0, 10), (2, 3, 8)]));
    }

    #[test]
    fn splits_the_limit_in_proportion_to_what_waits() {
        // 600, 300, 100 waiting; 100 allowed → 60, 30, 10.
        let w = waiting(&[(0, 0, 600), (1, 1000, 1300), (2, 0, 100)]);
        assert_eq!(
            allocate(&w, 100),
            waiting(&[(0, 0, 60), (1, 1000, 1030), (2, 0, 10)])
        );
        // Remainders go to the largest fractions and the total is exact.
        let w = waiting(&[(0, 0, 1), (1, 0, 1), (2, 0, 1)]);
        let a = allocate(&w, 2);
        assert_eq!(a.values().map(|(s, e)| e - s).sum::<i64>(), 2);
        let w = waiting(&[(0, 0, 7), (1, 0, 7), (2, 0, 7)]);
        let a = allocate(&w, 10);
        assert_eq!(a.values().map(|(s, e)| e - s).sum::<i64>(), 10);
        assert!(a.values().all(|(s, e)| (3..=4).contains(&(e - s))));
    }
}
