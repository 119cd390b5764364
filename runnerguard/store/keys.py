"""Every Redis key name runnerguard uses, in one place (the only module that knows them)."""

from __future__ import annotations

PREFIX = "rg"

# --- deliveries (spine) ---------------------------------------------------------------------------------------------


def delivery(guid: str) -> str:
    """Hash: the recorded delivery (raw body, headers that matter, received time, processing state)."""
    return f"{PREFIX}:delivery:{guid}"


def delivery_attempts(guid: str) -> str:
    """List: JSON history of processing attempts of one delivery."""
    return f"{PREFIX}:delivery:{guid}:attempts"


DELIVERIES_BY_TIME = f"{PREFIX}:deliveries"  # zset guid -> received_at: the index before issue #18 (read, trimmed)
DELIVERY_HOURS = f"{PREFIX}:deliveries:hours"  # zset hour -> hour: the hours that have a delivery bucket


def delivery_bucket(hour: int) -> str:
    """List: the deliveries received in one hour (epoch seconds // 3600), packed (store/delivery_index.py)."""
    return f"{PREFIX}:deliveries:h:{hour}"


def delivery_body(digest: str) -> str:
    """String with a TTL: a body with this digest (runnerguard/domain/freshness.py) was accepted; the same signed bytes
    under another delivery id are a replay."""
    return f"{PREFIX}:body:{digest}"


def body_digests(hour: int) -> str:
    """Hash, expiring when its bodies are too old for the intake anyway: field = 16-byte digest of a dated
    workflow_job body whose newest timestamp falls in this hour (epoch hours); the same bytes always land in the
    same hour, so one HEXISTS guards them. ~21-25 B a digest while a listpack, instead of a key of its own (~150 B).
    Level 0 of `body_digest_levels` (the only hash the release before the spill levels wrote)."""
    return f"{PREFIX}:bodies:{hour}"


def body_digest_levels(hour: int, digest: str) -> tuple[str, str, str]:
    """The three hashes a dated body's digest (hex) may be a field of: the hour's `body_digests` (level 0), then the
    hour's hash for the digest's first hex digit (level 1, 16 per hour), then for its first two (level 2, 256 per
    hour). A digest goes to the first level whose hash has room to stay a listpack (store/atomic.py, `@digest`);
    the keys follow from the digest alone, so any web process checks the same three."""
    base, digest = body_digests(hour), digest.lower()  # one spelling of the hex, whoever computed it
    return base, f"{base}:{digest[:1]}", f"{base}:{digest[:2]}"


def rq_job_template(digest: str) -> str:
    """Hash, kept forever: the fields every RQ job of one (task, queue) shares, named by their digest (a change of
    RQ or of a task's options makes a new one). The intake's script copies it into each job it enqueues."""
    return f"{PREFIX}:rqtpl:{digest}"


def replay(replay_id: str) -> str:
    """Hash: a bulk replay's filter, state and progress."""
    return f"{PREFIX}:replay:{replay_id}"


REPLAY_COUNTER = f"{PREFIX}:replay:counter"
RECOVERY_CHECKPOINT = f"{PREFIX}:recovery:checkpoint"  # epoch of the newest GitHub delivery fully handled


def recovery_asked(guid: str) -> str:
    """String with a TTL: a redelivery of this GUID was asked for lately; do not ask again until it expires."""
    return f"{PREFIX}:recovery:asked:{guid}"  # a number per replay, so replayed RQ jobs get fresh ids


WRITE_PROBE = f"{PREFIX}:probe:write"  # string with a short TTL: readiness and outage waits check Redis takes writes

# --- web authentication ---------------------------------------------------------------------------------------------


def auth_failures(scope: str, client: str) -> str:
    """String counter with a TTL (the throttle window): failed logins or bearer tokens of one client ("*": all)."""
    return f"{PREFIX}:auth:fail:{scope}:{client}"


def web_session(digest: str) -> str:
    """String with a TTL: an open dashboard session, by an HMAC of its id under a key bound to the admin token."""
    return f"{PREFIX}:session:{digest}"

SETUP_CREATED = f"{PREFIX}:setup:created"  # string: id of the App /setup created last (setup is off until a restart)

# --- job timeline ---------------------------------------------------------------------------------------------------


def job(repo_id: int, job_id: int) -> str:
    """String: the merged JSON record of one workflow job."""
    return f"{PREFIX}:job:{repo_id}:{job_id}"


JOBS_BY_CREATED = f"{PREFIX}:jobs:created"  # zset "repo_id:job_id" -> created_at


def pool_created(pool: str) -> str:
    """Zset "repo_id:job_id" -> created_at of the pool's jobs, written before 2026-12: read until it ages out."""
    return f"{PREFIX}:pool:{pool}:created"


def pool_created_at(pool: str, bucket: int) -> str:
    """Zset "repo_id:job_id" -> created_at of the pool's jobs created in one 10-minute bucket (store/time_buckets.py),
    expiring with the job retention."""
    return f"{PREFIX}:pool:{pool}:created@{bucket}"


def pool_started_at(pool: str, bucket: int) -> str:
    """Zset "repo_id:job_id" -> started_at of the pool's jobs started in one 10-minute bucket."""
    return f"{PREFIX}:pool:{pool}:started@{bucket}"


JOB_HISTORY_FLOOR = f"{PREFIX}:jobs:floor"  # string: epoch seconds before which the last trim left no job bucket


def pool_finished(pool: str) -> str:
    """Zset "repo_id:job_id" -> completed_at of the pool's counted finished jobs, written before 2026-12 (now
    pool_finished_at): read until it ages out."""
    return f"{PREFIX}:pool:{pool}:finished"


def pool_failed(pool: str) -> str:
    """Zset "repo_id:job_id" -> completed_at of the pool's counted failed jobs, written before 2026-12 (now
    pool_failed_at): read until it ages out."""
    return f"{PREFIX}:pool:{pool}:failed"


def pool_finished_at(pool: str, bucket: int) -> str:
    """Zset "repo_id:job_id" -> completed_at of the pool's jobs the failure rate counts, completed in one 10-minute
    bucket (store/time_buckets.py), expiring with the job retention."""
    return f"{pool_finished_buckets(pool)}{bucket}"


def pool_finished_buckets(pool: str) -> str:
    """What every pool_finished_at key starts with, the bucket following: a script names the buckets from it."""
    return f"{PREFIX}:pool:{pool}:finished@"


def pool_failed_at(pool: str, bucket: int) -> str:
    """Zset "repo_id:job_id" -> completed_at of the pool's jobs the failure rate counts as failed, by bucket."""
    return f"{pool_failed_buckets(pool)}{bucket}"


def pool_failed_buckets(pool: str) -> str:
    """What every pool_failed_at key starts with, the bucket following."""
    return f"{PREFIX}:pool:{pool}:failed@"


def pool_started(pool: str) -> str:
    """Zset "repo_id:job_id" -> started_at, written before 2026-12 (now pool_started_at): read until it ages out."""
    return f"{PREFIX}:pool:{pool}:started"


def pool_waiting(pool: str) -> str:
    """Zset "repo_id:job_id" -> created_at of jobs of the pool not yet started (queued or waiting)."""
    return f"{PREFIX}:pool:{pool}:waiting"


def pool_repos(pool: str) -> str:
    """Zset repo full name -> last completed_at of a job of the pool in that repo."""
    return f"{PREFIX}:pool:{pool}:repos"


def repo_created(repo: str) -> str:
    """Zset "repo_id:job_id" -> created_at, written before 2026-12 (nothing writes it now: a repository's jobs are
    picked from the job index by repo id). Read until its entries age out, trimmed by jobstore.trim_indexes."""
    return f"{PREFIX}:repo:{repo.lower()}:created"


def repo_ids(repo: str) -> str:
    """Set of the GitHub ids a repository full name has had: find(repo=...) picks its jobs' members by them."""
    return f"{PREFIX}:repo:{repo.lower()}:ids"


def repo_finished(repo: str) -> str:
    return f"{PREFIX}:repo:{repo.lower()}:finished"


def repo_failed(repo: str) -> str:
    return f"{PREFIX}:repo:{repo.lower()}:failed"


POOLS_SEEN = f"{PREFIX}:pools"  # set of pool names that have recorded jobs
REPOS_SEEN = f"{PREFIX}:repos"  # set of repository full names that have recorded jobs

# --- rollback -------------------------------------------------------------------------------------------------------


def rollback(pool: str, repo: str) -> str:
    """Hash: the rollback state of one pool in one repository."""
    return f"{PREFIX}:rollback:{pool}:{repo.lower()}"


def rollback_history(pool: str, repo: str) -> str:
    """List: JSON history of a pool/repo rollback state's transitions."""
    return f"{PREFIX}:rollback:{pool}:{repo.lower()}:history"


def rollback_lock(pool: str, repo: str) -> str:
    return f"{PREFIX}:rollback:lock:{pool}:{repo.lower()}"


def rollback_pending(pool: str, repo: str) -> str:
    """The decision a queued rollback task acts on (JSON), so the task itself carries only the pool and repo."""
    return f"{PREFIX}:rollback:pending:{pool}:{repo.lower()}"


ROLLBACKS = f"{PREFIX}:rollbacks"  # set of "pool\trepo" with a rollback state

# --- GitHub client --------------------------------------------------------------------------------------------------


def installation_token(installation_id: int) -> str:
    """Where releases before 2026-12 cached installation tokens in clear. Nothing writes it now (tokens stay in
    process memory); kept so the tests can check that nothing does."""
    return f"{PREFIX}:gh:token:{installation_id}"


def github_write_lock(installation_id: int) -> str:
    """Lock: mutating requests go out one at a time per installation."""
    return f"{PREFIX}:gh:writelock:{installation_id}"


def github_last_write(installation_id: int) -> str:
    """String: epoch seconds of the last mutating request of an installation (they go >= 1 s apart)."""
    return f"{PREFIX}:gh:lastwrite:{installation_id}"


def repo_installation(repo: str) -> str:
    return f"{PREFIX}:gh:repo-installation:{repo.lower()}"


# --- pre-warm -------------------------------------------------------------------------------------------------------


def prewarm_stats(cache: str, host: str) -> str:
    """Hash: hits, misses, errors, bytes_downloaded, seconds, state, sha256, last_error."""
    return f"{PREFIX}:prewarm:stats:{host}:{cache}"


def prewarm_daily(cache: str, host: str, day: str) -> str:
    """Hash with an 8-day TTL: hits, misses, errors of one cache on one host on one UTC day (YYYY-MM-DD), for the
    7-day hit rate of the scorecard."""
    return f"{PREFIX}:prewarm:daily:{host}:{cache}:{day}"


PREWARM_STATS_INDEX = f"{PREFIX}:prewarm:stats"  # set of "host\tcache"

# --- metrics --------------------------------------------------------------------------------------------------------

METRIC_COUNTERS = f"{PREFIX}:metrics:counters"  # hash "name{labels}" -> value

# --- dashboard rollups ----------------------------------------------------------------------------------------------


def dashboard_summary(pool: str, step: int, bucket_start: int, rule: str) -> str:
    """String (JSON, with a TTL): the job summary of one settled time bucket of a pool (runnerguard/rollup.py),
    so a dashboard render folds only the open buckets. `rule` is the counting rule's digest: a policy change
    starts fresh summaries."""
    return f"{PREFIX}:dash:summary:v1:{pool}:{step}:{bucket_start}:{rule}"


NOTICES = f"{PREFIX}:notices"  # stream of Notice JSON (runnerguard/store/notices.py)


def watchdog(repo_id: int, job_id: int) -> str:
    """Hash: what the watchdog did to the job (cancelled_at, forced_at, rerun_at, reason)."""
    return f"{PREFIX}:watchdog:{repo_id}:{job_id}"


BODY_DICTIONARIES = f"{PREFIX}:zdicts"  # hash dictionary id -> zstd dictionary trained from the live log (kept forever)
BODY_DICTIONARY_ACTIVE = f"{PREFIX}:zdict:active"  # string: the id new bodies are compressed with (read at start)


# --- runner hosts and their agents (issue #13) ---------------------------------------------------------------------

HOSTS = f"{PREFIX}:hosts"  # hash name -> JSON {created_at, token_sha256} of every host holding a token


def host_token(token_sha256: str) -> str:
    """String: the host a token (by its SHA-256, never the token itself) belongs to."""
    return f"{PREFIX}:host:token:{token_sha256}"


def host_report(name: str) -> str:
    """String: the host's latest report (JSON, with received_at and healthy_since)."""
    return f"{PREFIX}:host:{name}:report"


def host_notified(name: str) -> str:
    """String: the last up/down state a Notice was emitted for (the transition check's memory)."""
    return f"{PREFIX}:host:{name}:notified"


def host_cleanups(name: str) -> str:
    """List: cleanups reported and not yet turned into Notices."""
    return f"{PREFIX}:host:{name}:cleanups"


def work_items(host: str) -> str:
    """Hash item id -> JSON work item of one host (until done)."""
    return f"{PREFIX}:work:{host}:items"


def work_ready(host: str) -> str:
    """List of item ids waiting to be offered to the host's agent."""
    return f"{PREFIX}:work:{host}:ready"


def work_leases(host: str) -> str:
    """Zset item id -> lease expiry: offered, not done yet; offered again once the lease expires."""
    return f"{PREFIX}:work:{host}:leases"


def work_wake(host: str) -> str:
    """List pushed when work is created: wakes the host's long poll (BLPOP)."""
    return f"{PREFIX}:work:{host}:wake"


def work_once(host: str, item_id: str) -> str:
    """String with a TTL: this (job, cache or command) was made into work once; replays make nothing more."""
    return f"{PREFIX}:work:{host}:once:{item_id}"


def job_cache_answers(cache: str, host: str) -> str:
    """Hash hit / waited: the job-side answers of a host's cache (the hit rate a person cares about)."""
    return f"{PREFIX}:prewarm:jobside:{host}:{cache}"


def job_cache_answers_daily(cache: str, host: str, day: str) -> str:
    return f"{PREFIX}:prewarm:jobside:{host}:{cache}:{day}"


WORK_OWNERS = f"{PREFIX}:work:owners"  # hash item id -> host: whose item an id is (403 for another host's)

def watchdog_checked(repo_id: int, job_id: int) -> str:
    """String (epoch seconds, with a TTL): when the watchdog last asked GitHub about a job not seen complete."""
    return f"{PREFIX}:watchdog:checked:{repo_id}:{job_id}"


def pool_running(pool: str) -> str:
    """Zset "repo_id:job_id" -> started_at of jobs of the pool started and not completed (the watchdog's sweep)."""
    return f"{PREFIX}:pool:{pool}:running"


JOBS_OPEN = f"{PREFIX}:jobs:open"  # zset "repo_id:job_id" -> started_at, else created_at, of jobs not completed
WATCHDOG_BLOCKED = f"{PREFIX}:watchdog:blocked"  # hash repo (lower) -> JSON: why the watchdog cannot act there
WATCHDOG_RECENT = f"{PREFIX}:watchdog:recent"  # list of JSON: the watchdog's latest actions, newest first


# --- notifiers (issue #17) ------------------------------------------------------------------------------------------


def notify_cooldown(notifier: str, event: str, subject: str) -> str:
    """String with a TTL: the notice id that notifier last announced (event, subject) with; none again until it
    expires (or the outage is resolved)."""
    return f"{PREFIX}:notify:cooldown:{notifier}:{event}:{subject}"


def notify_open(notifier: str, subject: str) -> str:
    """Set of the outage events a notifier announced for a subject ("pool:NAME" or "host:NAME"), not yet resolved."""
    return f"{PREFIX}:notify:open:{notifier}:{subject}"


def notify_resolved(notifier: str, subject: str) -> str:
    """String with a TTL: the notice id that resolved the subject's outage (a retry of it is still sent)."""
    return f"{PREFIX}:notify:resolved:{notifier}:{subject}"


def notify_status(notifier: str) -> str:
    """Hash: a notifier's last result, last error and when (the dashboard's notifier table)."""
    return f"{PREFIX}:notify:status:{notifier}"


def notify_issue(notifier: str, pool: str) -> str:
    """String (JSON): the open outage issue of a pool that a github-issue notifier keeps (number, opened_at...)."""
    return f"{PREFIX}:notify:issue:{notifier}:{pool}"


def notify_issue_lock(notifier: str, pool: str) -> str:
    return f"{PREFIX}:notify:issue:lock:{notifier}:{pool}"


def notify_sent(notifier: str, notice_id: str) -> str:
    """String with a TTL: this notice reached this notifier (a repeated task sends nothing again)."""
    return f"{PREFIX}:notify:sent:{notifier}:{notice_id}"


# --- failure causes (runnerguard/store/causes.py) -------------------------------------------------------------------


def job_cause(repo_id: int, job_id: int) -> str:
    """String (JSON): a failed job's cause and evidence, as the previous release wrote it (read, no longer written:
    now a field of job_causes)."""
    return f"{PREFIX}:cause:{repo_id}:{job_id}"


def job_causes(repo_id: int, job_id: int) -> str:
    """Hash: a failed job's cause record (zstd, in chunks), its metered mark and its host fact, kept apart from the
    record its deliveries rebuild (layout: runnerguard/store/cause_records.py)."""
    return f"{PREFIX}:cause:j:{repo_id}:{job_id}"


def job_annotations(repo_id: int, job_id: int) -> str:
    """String (JSON list): the messages of the job's check-run annotations, fetched once."""
    return f"{PREFIX}:cause:annotations:{repo_id}:{job_id}"


def job_host_fact(repo_id: int, job_id: int) -> str:
    """String (JSON): what the host agent said about the job's host, read once when the cause was first computed
    (now a field of job_causes, unless too long for one)."""
    return f"{PREFIX}:cause:host:{repo_id}:{job_id}"


def run_fork(repo_id: int, run_id: int) -> str:
    """String "1" / "0": the run's head repository is another repository (a fork), from GET .../runs/{id}, once."""
    return f"{PREFIX}:run:fork:{repo_id}:{run_id}"


def twins(repo_id: int, digest: str) -> str:
    """Hash "job_id" -> JSON: failed jobs of one (repository, workflow, job name, head_sha), in or out of a pool."""
    return f"{PREFIX}:cause:twins:{repo_id}:{digest}"


def cause_metered(repo_id: int, job_id: int) -> str:
    """String: runnerguard_jobs_total already counted this failed job (with its first cause). The previous release's
    marker: still guards, no longer written (now a field of job_causes)."""
    return f"{PREFIX}:cause:metered:{repo_id}:{job_id}"


def pool_cause(pool: str, cause: str) -> str:
    """Zset "repo_id:job_id" -> completed_at: the pool's failed jobs of one cause (failed_by_cause, O(log n))."""
    return f"{PREFIX}:pool:{pool}:cause:{cause}"


def pool_failed_steps(pool: str) -> str:
    """Zset "repo_id:job_id\\tstep" -> completed_at: the user step each failed job of the pool failed at."""
    return f"{PREFIX}:pool:{pool}:failed-steps"


def periodic_slot(task: str, slot: int) -> str:
    """String with a TTL: the scheduler that set it enqueues `task` for this interval slot; the others skip it."""
    return f"{PREFIX}:cron:{task}:{slot}"
