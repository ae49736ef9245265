//! The conformance suite: Herald's contract, one async function per behaviour.
//!
//! Every backend runs these same bodies through [`conformance_tests!`](crate::conformance_tests).
//! Each function panics (fails) when the backend breaks the promise it names.

// These are test bodies: an unwrap that fails is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use herald::{ErrorKind, OutgoingMessage, Result, Subject};

pub mod batches;
pub mod bounds;
pub mod consumers;
pub mod jobs;
pub mod kv;
pub mod processors;
pub mod publish;
pub mod reads;
pub mod recording;
pub mod requests;
pub mod retention;
pub mod settling;
pub mod sourcing;
pub mod streams;
pub mod subscriptions;

/// A message to `subject` with `payload`.
pub fn msg(subject: &str, payload: impl Into<herald::Bytes>) -> OutgoingMessage {
    OutgoingMessage::new(Subject::new(subject).expect("test subjects are valid"), payload)
}

/// The seqs a stream holds, in order.
pub async fn seqs_held(bus: &crate::TestBus, stream: &str) -> Vec<u64> {
    let all = bus.read(stream, herald::ReadRange::from_seq(1, 100_000)).await.unwrap();
    all.iter().map(|m| m.seq).collect()
}

/// The seqs of one subject a stream holds, read with a filter (works on any stream).
pub async fn subject_seqs(bus: &crate::TestBus, stream: &str, subject: &str) -> Vec<u64> {
    let range = herald::ReadRange::from_seq(1, 100_000).filter(herald::Pattern::new(subject).unwrap());
    bus.read(stream, range).await.unwrap().iter().map(|m| m.seq).collect()
}

/// The kind of a result's error; panics if it succeeded.
#[track_caller]
pub fn kind<T: std::fmt::Debug>(result: Result<T>) -> ErrorKind {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err.kind(),
    }
}

/// Runs a test marked unsupported: it must fail (panic), or the mark is stale.
pub async fn expect_unsupported(
    name: &str,
    reason: &str,
    body: impl std::future::Future<Output = ()> + Send + 'static,
) {
    eprintln!("{name}: marked unsupported on this backend: {reason}");
    let outcome = tokio::spawn(body).await;
    assert!(
        outcome.is_err_and(|e| e.is_panic()),
        "{name} is marked unsupported ({reason}) but passed: remove the mark"
    );
}

/// Generates one `#[tokio::test]` per conformance test, each on a fresh bus from
/// `$factory` (an `async fn() -> TestBus`).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@all paused $factory);
    };
    // Every test on real time: for backends whose timers are not tokio's
    // (a server's leases run on its own clock).
    (real_time $factory:path) => {
        $crate::conformance_tests!(@all real_time $factory);
    };
    (@all $mode:ident $factory:path) => {
        $crate::conformance_tests!(@run $mode $factory;
            streams::a_stream_is_created_on_first_publish,
            streams::a_publish_goes_to_the_stream_that_captures_its_subject,
            streams::creating_a_stream_again_with_the_same_config_is_a_no_op,
            streams::creating_a_stream_again_with_another_config_is_rejected,
            streams::overlapping_subjects_are_rejected,
            streams::stream_info_reports_counts_seqs_times_and_subjects,
            streams::streams_are_listed_by_name,
            streams::updating_limits_applies_them_at_once,
            streams::deleting_a_stream_removes_it_and_its_messages,
            streams::purge_all_keeps_the_sequence_going,
            streams::purge_by_subject_deletes_only_that_subject,
            streams::purge_before_a_seq_deletes_only_older_messages,
            streams::unknown_streams_are_stream_not_found,
            streams::invalid_and_reserved_names_are_rejected,
            publish::publishes_get_consecutive_seqs,
            publish::headers_id_and_content_type_round_trip,
            publish::generated_ids_are_unique,
            publish::a_batch_gets_consecutive_seqs,
            publish::a_batch_with_one_invalid_message_writes_nothing,
            publish::a_batch_across_streams_or_empty_is_rejected,
            publish::a_duplicate_id_inside_the_window_returns_the_first_seq_and_writes_nothing,
            publish::a_duplicate_id_inside_one_batch_is_written_once,
            publish::an_id_outside_the_window_is_written_again,
            publish::dedup_can_be_turned_off,
            publish::a_wrong_expected_last_seq_is_rejected_with_the_actual_seq,
            publish::a_wrong_expected_subject_seq_is_rejected_with_the_actual_seq,
            publish::an_oversize_payload_is_rejected_and_writes_nothing,
            publish::oversize_or_invalid_headers_are_rejected,
            publish::invalid_and_reserved_subjects_are_rejected_and_create_nothing,
            bounds::a_subject_with_a_bidirectional_override_is_refused_and_writes_nothing,
            bounds::durations_over_their_bounds_are_refused_and_change_nothing,
            reads::a_message_is_read_by_seq,
            reads::the_last_message_of_a_subject_is_read,
            reads::a_range_is_read_from_a_seq_with_a_filter_and_a_limit,
            reads::a_range_is_read_from_a_time,
            reads::a_subject_is_read_in_order_among_interleaved_subjects,
            reads::the_subject_index_survives_deletions_in_the_middle,
            reads::reading_one_subject_needs_the_subject_index,
            reads::the_last_of_a_subject_is_kept_exact_through_deletions,
            retention::max_msgs_deletes_the_oldest,
            retention::max_bytes_deletes_the_oldest,
            retention::max_msgs_per_subject_keeps_the_newest_of_each_subject,
            retention::discard_new_rejects_publishes_over_the_limit,
            retention::max_age_deletes_old_messages,
            retention::a_message_ttl_expires_it,
            consumers::two_consumers_each_see_every_message,
            consumers::a_lone_member_gets_an_ordered_stream,
            consumers::deliveries_arrive_as_a_stream,
            consumers::filters_and_start_policies_choose_what_is_delivered,
            consumers::an_expired_lease_goes_to_another_member,
            consumers::a_nak_with_a_delay_is_not_redelivered_before_the_delay,
            consumers::the_backoff_schedule_is_honoured,
            consumers::max_deliver_dead_letters_and_replay_republishes,
            consumers::term_dead_letters_at_once_with_the_reason,
            consumers::deleting_a_stream_deletes_its_dead_letter_streams,
            consumers::a_consumer_whose_dead_letter_name_is_too_long_is_refused,
            consumers::consumers_whose_dead_letter_names_collide_never_share_a_stream,
            consumers::a_consumer_updated_to_keep_its_dead_letters_gets_its_stream,
            consumers::a_message_with_full_headers_termed_at_length_is_dead_lettered,
            consumers::a_payload_over_the_default_limit_is_dead_lettered,
            consumers::a_reason_with_line_breaks_is_dead_lettered_on_one_line,
            consumers::discarded_dead_letters_are_dropped,
            consumers::acks_are_idempotent,
            batches::a_batched_ack_is_visible_when_it_returns,
            batches::a_batch_may_repeat_an_ack,
            batches::a_batch_mixes_ack_nak_with_a_delay_and_term,
            batches::a_lost_lease_in_a_batch_leaves_the_rest_applied,
            batches::small_fetches_take_the_backlog_oldest_first,
            settling::settling_a_seq_the_filter_skipped_is_lease_lost,
            settling::settling_a_seq_never_delivered_is_lease_lost,
            settling::settling_another_members_lease_is_lease_lost,
            settling::only_the_holders_repeated_ack_of_an_acked_delivery_succeeds,
            consumers::in_progress_extends_the_lease,
            consumers::fresh_messages_come_before_redeliveries,
            consumers::max_ack_pending_bounds_what_is_in_flight,
            consumers::info_reports_floor_lag_and_in_flight,
            consumers::a_reset_moves_the_consumer_and_shows_in_info,
            consumers::consumers_are_listed_updated_and_deleted,
            consumers::a_filter_that_can_never_match_the_streams_subjects_is_refused,
            consumers::consumers_work_far_into_a_stream_among_other_streams,
            consumers::work_queue_retention_deletes_exactly_the_acked,
            consumers::interest_retention_deletes_once_every_consumer_acked,
            subscriptions::a_slow_subscriber_is_told_it_lagged_and_resumes,
            kv::kv_values_have_revisions_and_a_bounded_history,
            kv::kv_create_only_if_absent_even_after_a_delete,
            kv::kv_watchers_see_puts_deletes_and_purges,
            kv::kv_keys_lists_the_keys_that_hold_a_value,
            kv::kv_a_key_with_a_ttl_expires,
            kv::kv_invalid_keys_and_buckets_are_rejected,
            kv::a_lease_is_exclusive_expires_and_fences_a_stale_holder,
            kv::a_dropped_lease_is_released,
            jobs::two_jobs_with_one_dedup_key_run_once,
            jobs::a_delayed_job_is_not_claimed_early,
            jobs::priorities_are_served_in_order_without_starving_the_low_levels,
            jobs::a_job_is_retried_with_its_attempt_count_then_dead_lettered,
            jobs::a_job_is_dead_lettered_with_a_reason,
            jobs::a_claimed_job_is_leased_and_heartbeats_keep_it,
            jobs::invalid_queues_and_jobs_are_rejected,
            requests::a_request_is_answered_by_its_responder,
            requests::a_request_asked_to_wait_for_ever_gets_its_reply,
            requests::a_request_with_no_responder_fails_at_once,
            requests::an_unanswered_request_times_out,
            requests::requests_are_shared_among_responders,
            requests::invalid_request_subjects_are_rejected,
            processors::a_processor_routes_by_subject_and_acks,
            processors::a_route_the_stream_can_never_carry_is_refused_at_start,
            processors::retry_with_backoff_retries_at_the_right_moments_then_dead_letters,
            processors::a_restarted_processor_resumes_after_its_ack_floor,
            processors::skip_and_custom_error_strategies,
            processors::shutdown_lets_the_messages_in_hand_finish,
            processors::a_processor_stops_visibly_when_its_consumer_goes_away,
            processors::a_fail_fast_processor_run_again_at_once_handles_the_rest_of_its_batch,
            processors::a_fail_fast_processor_with_several_workers_hands_back_every_batch,
            processors::a_processor_shut_down_while_waiting_leaves_nothing_leased,
            processors::a_processor_run_again_with_an_added_route_gets_its_subjects,
            sourcing::typed_events_carry_an_envelope_and_map_to_cloudevents,
            sourcing::a_typed_subscription_yields_no_event_of_another_type,
            sourcing::an_aggregate_is_rebuilt_from_its_events,
            sourcing::an_append_with_a_stale_version_fails_with_the_actual_version,
            sourcing::an_aggregate_loads_from_its_snapshot,
            recording::a_recording_bus_keeps_what_was_published,
        );
        $crate::conformance_tests!(@run real_time $factory;
            consumers::four_members_share_ten_thousand_messages,
            consumers::a_publish_racing_a_waiting_consumer_is_never_missed,
            consumers::a_fetch_asked_to_wait_for_ever_gets_the_next_message,
            subscriptions::a_subscription_follows_a_pattern_across_streams,
            subscriptions::replay_then_follow_has_no_gap_or_duplicate,
            subscriptions::a_publish_racing_a_waiting_subscriber_is_never_missed,
            subscriptions::a_resumed_subscription_skips_what_it_saw_even_once_deleted,
            subscriptions::a_subscription_resumed_at_the_highest_seq_skips_that_stream,
            kv::kv_ten_concurrent_updates_from_one_revision_exactly_one_wins,
            processors::concurrent_workers_with_a_blocking_handler_handle_each_message_once,
            sourcing::commands_racing_on_one_aggregate_are_retried_on_conflict,
        );
    };
    (@run paused $factory:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            // Paused tokio time: leases, backoff and waits run on virtual time.
            #[tokio::test(start_paused = true)]
            async fn $name() {
                let bus = $factory().await.with_paused_time();
                $crate::suite::$module::$name(&bus).await;
            }
        )*
    };
    (@run real_time $factory:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let bus = $factory().await;
                if let Some(reason) = bus.unsupported_reason(stringify!($name)) {
                    $crate::suite::expect_unsupported(stringify!($name), reason, async move {
                        $crate::suite::$module::$name(&bus).await;
                    })
                    .await;
                    return;
                }
                $crate::suite::$module::$name(&bus).await;
            }
        )*
    };
}
